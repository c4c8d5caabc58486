"""The `invoicing` command. Each command is a thin shell around `models/`: it resolves the
settings (starting the embedded servers when no URLs are configured), connects, calls one
domain operation and prints the outcome."""

from invoicing.cli import billing, data, servers, storage, templates
from invoicing.cli.common import app

__all__ = ["app", "billing", "data", "servers", "storage", "templates"]
