"""Parsers of the option values several commands share (``--set``, ``--seeds``): the command line's business,
so ``wtal test`` and ``wtal refine`` need not import the training loop to read them."""

from __future__ import annotations

import json

from ..errors import WtalError


def parse_settings(pairs: list[str]) -> dict:
    """``["accumulate=4", "nms_threshold=none"]`` -> {"accumulate": 4, "nms_threshold": None} (JSON values)."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise WtalError(f"bad --set {pair!r}", "use --set name=value")
        value = "null" if value.strip().lower() == "none" else value
        try:
            settings[key.strip()] = json.loads(value)
        except ValueError:
            settings[key.strip()] = value
    return settings


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` (or both, ``"0-2,7"``) -> the seeds, in order, each once."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            seeds += range(int(first), int(last or first) + 1)
    except ValueError:
        raise WtalError(f"--seeds {text!r} is not like 0,1,2 or 0-4", "e.g. --seeds 0-4") from None
    if not seeds:
        raise WtalError(f"--seeds {text!r} names no seed", "e.g. --seeds 0-4")
    return list(dict.fromkeys(seeds))
