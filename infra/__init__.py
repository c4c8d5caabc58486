"""The plumbing every entry point shares: settings, database, Redis and arq, the embedded
servers, file storage, signed links and the live-event bus. Importing it starts nothing."""
