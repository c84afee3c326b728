"""I3D checkpoints: safe loading, key-layout conversion, hashing and the ``models/`` registry."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from ..cache import sha256_file
from ..errors import DataError
from ..state_files import load_trusted_types, unwrap_state_dict
from .i3d import InceptionI3d

STREAM_CHANNELS = {"rgb": 3, "flow": 2}
RANDOM_SEED = 0

# video_features / kinetics_i3d_pytorch key names -> pytorch-i3d names (applied in order).
_VIDEO_FEATURES_RENAMES = [
    (r"^conv3d_0c_1x1\.", "logits."),
    (r"^conv3d_(\w+?)\.", lambda m: f"Conv3d_{m.group(1)}."),
    (r"^mixed_(\w+?)\.", lambda m: f"Mixed_{m.group(1)}."),
    (r"\.branch_0\.", ".b0."),
    (r"\.branch_1\.0\.", ".b1a."),
    (r"\.branch_1\.1\.", ".b1b."),
    (r"\.branch_2\.0\.", ".b2a."),
    (r"\.branch_2\.1\.", ".b2b."),
    (r"\.branch_3\.1\.", ".b3b."),
    (r"\.batch3d\.", ".bn."),
]


def _rename(state: dict, rules) -> dict:
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def normalize_state_dict(state: dict) -> tuple[dict, str]:
    """Rename a state dict to the pytorch-i3d layout; returns (state, layout found)."""
    if any(k.startswith(("conv3d_1a_7x7.", "mixed_")) for k in state):
        return _rename(state, _VIDEO_FEATURES_RENAMES), "video_features"
    return state, "pytorch-i3d"


@dataclass(frozen=True)
class WeightsInfo:
    """What the features were computed with; goes into every feature file's metadata."""

    stream: str
    path: str | None  # None: seeded random weights
    sha256: str | None
    layout: str | None
    random_seed: int | None = None

    @property
    def is_random(self) -> bool:
        return self.path is None

    @property
    def cache_key(self) -> str:
        return self.sha256 if self.sha256 else f"random-seed{self.random_seed}"

    def record(self) -> dict[str, object]:
        if self.is_random:
            return {"random_seed": self.random_seed}
        return {"path": self.path, "sha256": self.sha256, "layout": self.layout}


#: the one rule for where I3D checkpoints live, as every message, example and README says it
MODELS_RULE = "the models folder: $WTAL_MODELS_DIR if set, else ~/.cache/wtal-pipe/models"


def models_dir() -> Path:
    """Where registry names resolve (:data:`MODELS_RULE`; ``~/.cache`` is ``$XDG_CACHE_HOME`` when that is set),
    the same wherever wtal-pipe is installed from."""
    env = os.environ.get("WTAL_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "wtal-pipe" / "models"


def registry() -> dict:
    """The checkpoints the package knows, updated by the models folder's own ``registry.json``."""
    shipped = json.loads(resources.files(__package__).joinpath("checkpoints.json").read_text())["checkpoints"]
    local = models_dir() / "registry.json"
    if not local.exists():
        return shipped
    try:
        return shipped | json.loads(local.read_text())["checkpoints"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"not a checkpoint registry ({exc.__class__.__name__})", 'expected {"checkpoints": {...}}', local
        ) from exc


def resolve_checkpoint(name_or_path: str) -> tuple[Path, dict | None]:
    """A registry name or a file path -> (file, registry entry or None)."""
    entries = registry()
    if name_or_path in entries:
        entry = entries[name_or_path]
        path = models_dir() / entry["file"]
        if not path.exists():
            raise DataError(
                f"checkpoint {name_or_path!r} is not in {models_dir()} ({MODELS_RULE})",
                f"download {entry['origin']} and save it as {path}",
                path,
            )
        return path, entry
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise DataError(
            "checkpoint file not found", f"pass a path or one of: {', '.join(entries) or '(registry empty)'}", path
        )
    by_file = {e["file"]: e for e in entries.values()}
    return path, by_file.get(path.name)


def random_i3d(channels: int) -> InceptionI3d:
    """Seeded random I3D, He-initialized (fan-in, ReLU) so activations keep their scale through the
    ~60 layers: PyTorch's default init shrinks the features to ~1e-6, useless even for testing.
    The global RNG is left untouched."""
    generator = torch.Generator().manual_seed(RANDOM_SEED + channels)
    with torch.random.fork_rng(devices=[]):  # the constructor's default init draws from the global RNG
        model = InceptionI3d(channels)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv3d):
                std = (2.0 / (module.in_channels * math.prod(module.kernel_size))) ** 0.5
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
                if module.bias is not None:
                    module.bias.zero_()
    return model.eval()


def load_i3d(stream: str, checkpoint: str | None) -> tuple[InceptionI3d, WeightsInfo]:
    """Build one I3D stream; with no checkpoint, seeded random weights (the caller warns loudly)."""
    channels = STREAM_CHANNELS[stream]
    if checkpoint is None:
        return random_i3d(channels), WeightsInfo(stream, None, None, None, RANDOM_SEED)

    path, entry = resolve_checkpoint(checkpoint)
    digest = sha256_file(path)
    if entry and entry.get("sha256") and entry["sha256"] != digest:
        raise DataError(
            f"sha256 {digest[:12]}... does not match the registry's {entry['sha256'][:12]}...",
            "the download is corrupt or a different file; fetch it again",
            path,
        )
    state, layout = normalize_state_dict(unwrap_state_dict(load_trusted_types(path, "check the file"), path))
    first = state.get("Conv3d_1a_7x7.conv3d.weight")
    if first is None:
        raise DataError(
            "not an I3D InceptionV1 checkpoint (no Conv3d_1a_7x7 weights)",
            "use a pytorch-i3d or video_features I3D checkpoint",
            path,
        )
    if first.shape[1] != channels:
        other = next(s for s, c in STREAM_CHANNELS.items() if c == first.shape[1])
        raise DataError(
            f"is a {other} checkpoint ({first.shape[1]} input channels), given for {stream}",
            f"pass it as --{other}-weights",
            path,
        )
    num_classes = state["logits.conv3d.weight"].shape[0] if "logits.conv3d.weight" in state else 400
    model = InceptionI3d(channels, num_classes)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("logits.")]  # the head is unused for features
    unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise DataError(
            f"key mismatch (missing {missing[:3]}, unexpected {unexpected[:3]})",
            "the checkpoint is not InceptionV1 I3D in a known layout",
            path,
        )
    return model.eval(), WeightsInfo(stream, str(path), digest, layout)


@dataclass(frozen=True)
class FoundCheckpoint:
    """A registry entry and what the models folder holds for it."""

    name: str
    path: Path
    present: bool
    sha256: str | None  # of the file, when present
    expected: str | None  # the registry's, when someone pinned it

    @property
    def verdict(self) -> str:
        if not self.present:
            return "missing"
        if self.expected is None:
            return "present (the registry pins no sha256 yet: add this one to registry.json once verified)"
        return "present, sha256 matches the registry" if self.sha256 == self.expected else "sha256 DIFFERS"


def inventory() -> list[FoundCheckpoint]:
    """Every checkpoint the registry knows, and whether the models folder holds it intact."""
    folder, found = models_dir(), []
    for name, entry in registry().items():
        path = folder / entry["file"]
        digest = sha256_file(path) if path.is_file() else None
        found.append(FoundCheckpoint(name, path, path.is_file(), digest, entry.get("sha256")))
    return found
