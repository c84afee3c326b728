"""Presets: what each method's authors used on a benchmark, each value with its source; and ``cpu-small``, the
settings for a few minutes of training on a CPU (a user's own clips).

``wtal train --preset activitynet1.2`` trains on the benchmark's training subset with the method's
published settings for it, and the run remembers the preset, so ``wtal test`` scores the benchmark's test
subset over its tIoU range. A method lists only what differs from its THUMOS14 defaults (``Method.presets``);
where neither its official code nor its paper gives a value, the THUMOS14 value stays and the table says so.
Importable without torch (the CLI offers the names as choices).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from ..errors import WtalError
from .settings import Sourced

if TYPE_CHECKING:
    from .base import Method

PresetName = Literal["thumos14", "activitynet1.2", "activitynet1.3", "cpu-small"]
PRESET_NAMES: tuple[str, ...] = get_args(PresetName)
DEFAULT_PRESET = "thumos14"
KEPT = "THUMOS14 value (no source gives one)"
#: where the cpu-small values come from: generated validation clips, never a test split
CPU_SMALL = "wtal-pipe: chosen on generated validation clips (experiments/own_videos.py)"


@dataclass(frozen=True)
class Benchmark:
    """What a benchmark fixes for every method: where it trains and tests, and the tIoU range it reports."""

    train_subsets: tuple[str, ...]  # the training subset's names, the first one a dataset has is used
    test_subset: str
    eval_tiou: str | None  # None: each method's paper's own range (THUMOS14: they differ)
    source: str
    settings: dict[str, Sourced] = field(default_factory=dict)  # for every method that has the setting
    rows_from_data: bool = False  # rows sampled per training video: the training videos' median length

    def train_subset_of(self, database: dict) -> str:
        """The training subset of an annotation database: the first of ``train_subsets`` it has (else the
        first, and loading it names the subsets present)."""
        present = {entry.get("subset") for entry in database.values()}
        return next((name for name in self.train_subsets if name in present), self.train_subsets[0])


BENCHMARKS: dict[str, Benchmark] = {
    # THUMOS14 trains on its validation videos: our builders and the BaS-Net/UM release call them "train",
    # the W-TALC release and THUMOS's own files "validation"
    "thumos14": Benchmark(("train", "validation"), "test", None, "THUMOS14 validation videos train, test videos test"),
    **{
        name: Benchmark(
            ("training",),
            "validation",
            "0.5:0.95:0.05",
            "ActivityNet protocol (test labels are withheld: train on training, report validation)",
        )
        for name in ("activitynet1.2", "activitynet1.3")
    },
    "cpu-small": Benchmark(
        ("train", "validation"),
        "test",
        None,
        "your own clips, trained in minutes on a CPU",
        {
            name: Sourced(value, CPU_SMALL)
            for name, value in {"lr": 1e-3, "epochs": 100, "normalize_features": True, "hidden_dim": 256}.items()
        },
        rows_from_data=True,
    ),
}

#: the settings the preset table always shows, changed or not (num_segments only where rows are sampled)
HEADLINE = ("num_segments", "batch_size", "lr", "iterations", "class_threshold", "nms_threshold")


def benchmark(name: str | None) -> Benchmark:
    """A preset's benchmark facts (``None``: a run from before presets, or imported: THUMOS14)."""
    if name is None:
        return BENCHMARKS[DEFAULT_PRESET]
    if name not in BENCHMARKS:
        raise WtalError(f"unknown preset {name!r}", f"choose one of {', '.join(PRESET_NAMES)}")
    return BENCHMARKS[name]


def preset_values(method: type[Method], name: str) -> dict[str, Sourced]:
    """Every setting ``name`` changes for ``method``, with its source."""
    facts = benchmark(name)
    values = {"eval_tiou": Sourced(facts.eval_tiou, facts.source)} if facts.eval_tiou else {}
    has = {setting for group in method.setting_groups().values() for setting in group.names()}
    return values | {k: v for k, v in facts.settings.items() if k in has} | method.presets.get(name, {})


def preset_settings(method: type[Method], name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings to train with: the preset's values under the user's ``overrides``. A step count the user
    gives wins over epochs, a preset's or the method's own (CASE counts epochs by default)."""
    changes = {key: value.value for key, value in preset_values(method, name).items()}
    if "iterations" in overrides and "epochs" not in overrides:
        changes["epochs"] = None
    return changes | overrides


def preset_rows(method: type[Method]) -> list[tuple[str, list[str], str]]:
    """(setting, its value per preset, the sources of the ActivityNet values) for ``method``: every setting a
    preset changes and the headline settings; a value no source gives is the THUMOS14 one, marked ``*``."""
    defaults = method.defaults()
    shown = [name for name in HEADLINE if name != "num_segments" or defaults.training.train_sampling != "whole"]
    changed = {name: preset_values(method, name) for name in PRESET_NAMES if name != DEFAULT_PRESET}
    settings = dict.fromkeys([*shown, *(key for values in changed.values() for key in values)])
    rows = []
    for setting in settings:
        if setting == "iterations" and (
            defaults.training.epochs is not None or all("epochs" in values for values in changed.values())
        ):
            continue  # the method (CASE) or every preset counts epochs instead
        default = defaults.values().get(setting)
        cells, sources = [_shown(default)], []
        for values in changed.values():
            given = values.get(setting)
            cells.append(_shown(given.value) if given else f"{_shown(default)}*")
            if given and given.source not in sources:
                sources.append(given.source)
        rows.append((setting, cells, "; ".join(sources) or "*"))
    return rows


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return (
            "[" + ", ".join(f"{v:g}" for v in value) + "]"
            if len(value) < 5
            else f"{value[0]:g}:{value[-1]:g} ({len(value)})"
        )
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
