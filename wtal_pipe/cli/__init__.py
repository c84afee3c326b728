"""The ``wtal`` command line: the app and its error boundary (``app.py``), one module per stage; each
module registers its commands when imported, in the order ``wtal --help`` lists them."""

from . import extract  # noqa: F401

# isort: split
from . import train  # noqa: F401

# isort: split
from . import localize  # noqa: F401

# isort: split
from . import report  # noqa: F401

# isort: split
from . import imports, tools  # noqa: F401
from .app import app, main

__all__ = ["app", "main"]
