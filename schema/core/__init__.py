"""The schema's machinery, apart from its domain modules: execution, limits, masking,
pagination, loaders, fan-out, permissions, the typed context and errors, scalars and nodes."""
