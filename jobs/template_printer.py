"""The child process that prints with an organization's own template (`jobs/invoice_templates.py`
starts it as `python -m jobs.template_printer`): the view and the text on stdin, the HTML on stdout.

It loads only what printing needs. Of `models` it uses three small modules (errors, currencies,
locales); the package's tables, whose import takes seconds, are not loaded: the package is
entered without running its `__init__`."""

if __name__ == "__main__":
    import sys
    import types
    from pathlib import Path

    _models = types.ModuleType("models")
    _models.__path__ = [str(Path(__file__).resolve().parent.parent / "models")]
    sys.modules.setdefault("models", _models)

    from jobs.invoice_templates import serve

    serve()
