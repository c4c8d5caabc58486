"""The entry points: the ASGI app (`invoicing.app:create_app`) and the `invoicing` command
(also `python -m invoicing`)."""
