"""``--method`` name -> method class (a dict and a decorator; the modules are imported on first use)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ..errors import WtalError
from .names import METHOD_NAMES

if TYPE_CHECKING:
    from .base import Method

M = TypeVar("M", bound="type[Method]")
_METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[M], M]:
    def decorate(cls: M) -> M:
        if name in _METHODS:
            raise ValueError(f"method {name!r} registered twice")
        if name not in METHOD_NAMES:
            raise ValueError(f"method {name!r} is not listed in methods/names.py")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorate


def _load_all() -> None:
    for name in METHOD_NAMES:  # each method lives in the module of its name; importing it registers it
        importlib.import_module(f"{__package__}.{name}")


def list_methods() -> list[str]:
    _load_all()
    return sorted(_METHODS)


def get_method(name: str) -> type[Method]:
    _load_all()
    if name not in _METHODS:
        raise WtalError(f"unknown method {name!r}", f"choose one of {', '.join(list_methods())}")
    return _METHODS[name]
