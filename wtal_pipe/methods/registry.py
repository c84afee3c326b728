"""``--method`` name -> method class (a dict and a decorator, nothing more)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

from ..errors import WtalError

if TYPE_CHECKING:
    from .base import Method

M = TypeVar("M", bound="type[Method]")
_METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[M], M]:
    def decorate(cls: M) -> M:
        if name in _METHODS:
            raise ValueError(f"method {name!r} registered twice")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorate


def list_methods() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> type[Method]:
    if name not in _METHODS:
        raise WtalError(f"unknown method {name!r}", f"choose one of {', '.join(list_methods())}")
    return _METHODS[name]
