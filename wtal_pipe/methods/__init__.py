"""The four WTAL methods; importing this package registers them."""

from . import backtal, basnet, cmcs, um  # noqa: F401  (registration side effect)
from .registry import get_method, list_methods

__all__ = ["get_method", "list_methods"]
