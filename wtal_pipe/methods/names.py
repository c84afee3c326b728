"""The methods' names, importable without torch (the CLI offers them as choices before loading anything)."""

from typing import Literal, get_args

MethodName = Literal["basnet", "um", "cmcs", "backtal", "case"]
METHOD_NAMES: tuple[str, ...] = get_args(MethodName)
