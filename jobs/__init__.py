"""Background work run by the arq worker."""
