from invoicing.cli import app

app(prog_name="invoicing")
