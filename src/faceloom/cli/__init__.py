"""The command line: one module per command group, registered in :mod:`faceloom.cli.main`; the
settings' options derived in :mod:`.options`; one progress adapter (:mod:`.progress`)."""

from faceloom.cli.main import app, main

__all__ = ["app", "main"]
