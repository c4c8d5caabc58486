"""Thin glue between the schema and the domain: scoped load, domain call, map."""
