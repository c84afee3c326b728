"""The four WTAL methods, one module each; the registry imports them when a method is first asked for,
so importing this package (or its names) does not import torch."""

from .names import METHOD_NAMES, MethodName
from .registry import get_method, list_methods

__all__ = ["METHOD_NAMES", "MethodName", "get_method", "list_methods"]
