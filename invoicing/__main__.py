"""`python -m invoicing`: the `invoicing` command."""

from invoicing.cli import app

if __name__ == "__main__":
    app(prog_name="invoicing")
