"""The ``fsearch`` command line: thin typer commands over the library (``search``)."""

from search.cli.app import app, main

__all__ = ["app", "main"]
