"""I3D: shapes, parameter count, TF-SAME padding, checkpoint loading in both key layouts."""

from __future__ import annotations

import pickle
import re

import pytest
import torch

from wtal_pipe.errors import DataError
from wtal_pipe.features.i3d import InceptionI3d, _same_pad
from wtal_pipe.features.weights import load_i3d, normalize_state_dict

#: pytorch-i3d key -> video_features key (how that toolbox names the same tensors), for checkpoints in its layout
VIDEO_FEATURES_NAMES = [
    (r"^logits\.", "conv3d_0c_1x1."),
    (r"^Conv3d_(\w+?)\.", lambda m: f"conv3d_{m.group(1)}."),
    (r"^Mixed_(\w+?)\.", lambda m: f"mixed_{m.group(1)}."),
    (r"\.b0\.", ".branch_0."),
    (r"\.b1a\.", ".branch_1.0."),
    (r"\.b1b\.", ".branch_1.1."),
    (r"\.b2a\.", ".branch_2.0."),
    (r"\.b2b\.", ".branch_2.1."),
    (r"\.b3b\.", ".branch_3.1."),
    (r"\.bn\.", ".batch3d."),
]


def to_video_features_layout(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        for pattern, replacement in VIDEO_FEATURES_NAMES:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


@pytest.fixture(scope="module")
def rgb_net():
    torch.manual_seed(0)
    return InceptionI3d(3).eval()


def test_parameter_count_and_key_layout(rgb_net):
    assert sum(p.numel() for p in rgb_net.parameters()) == pytest.approx(12.7e6, rel=0.01)
    keys = set(rgb_net.state_dict())
    for key in (
        "Conv3d_1a_7x7.conv3d.weight",
        "Conv3d_1a_7x7.bn.running_var",
        "Mixed_3b.b1b.conv3d.weight",
        "Mixed_5c.b3b.bn.bias",
        "logits.conv3d.weight",
        "logits.conv3d.bias",
    ):
        assert key in keys
    assert rgb_net.state_dict()["logits.conv3d.weight"].shape == (400, 1024, 1, 1, 1)
    assert rgb_net.Conv3d_1a_7x7.bn.eps == 1e-3 and rgb_net.Conv3d_1a_7x7.bn.momentum == 0.01


def test_tf_same_padding():
    assert _same_pad(224, 7, 2) == (2, 3)
    assert _same_pad(16, 3, 1) == (1, 1)
    assert _same_pad(7, 2, 2) == (0, 1)  # odd size: pad = k - size % stride
    assert _same_pad(8, 2, 2) == (0, 0)


@torch.inference_mode()
def test_one_16x224_chunk_gives_one_1024_vector(rgb_net):
    features = rgb_net.features(torch.zeros(1, 3, 16, 224, 224))
    assert features.shape == (1, 1024)
    assert rgb_net(torch.zeros(1, 3, 16, 224, 224)).shape == (1, 400)


@torch.inference_mode()
def test_small_crops_and_batching_agree(rgb_net):
    x = torch.randn(3, 3, 16, 64, 64)
    batched = rgb_net.features(x)
    single = torch.cat([rgb_net.features(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5)


def _save(obj, path):
    torch.save(obj, path)
    return str(path)


@torch.inference_mode()
@pytest.mark.parametrize("layout", ["pytorch-i3d", "video_features", "wrapped"])
def test_checkpoint_round_trip(tmp_path, layout):
    torch.manual_seed(5)
    source = InceptionI3d(2, num_classes=157).eval()
    for module in source.modules():  # non-trivial BN statistics so a dropped key would show
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    state = source.state_dict()
    if layout == "video_features":
        state = to_video_features_layout(state)
        assert "conv3d_1a_7x7.batch3d.weight" in state and "mixed_4f.branch_1.1.conv3d.weight" in state
    elif layout == "wrapped":
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    model, info = load_i3d("flow", _save(state, tmp_path / "flow.pt"))
    assert info.layout == ("video_features" if layout == "video_features" else "pytorch-i3d")
    assert len(info.sha256) == 64 and not info.is_random
    x = torch.randn(1, 2, 16, 64, 64)
    torch.testing.assert_close(model.features(x), source.features(x))
    assert model.logits.conv3d.out_channels == 157


def test_layout_conversion_is_a_bijection(rgb_net):
    state = rgb_net.state_dict()
    back, layout = normalize_state_dict(to_video_features_layout(state))
    assert layout == "video_features" and list(back) == list(state)


def test_wrong_stream_checkpoint_is_named(tmp_path, rgb_net):
    path = _save(rgb_net.state_dict(), tmp_path / "rgb.pt")
    with pytest.raises(DataError, match="is a rgb checkpoint.*--rgb-weights"):
        load_i3d("flow", path)


class _Payload:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_arbitrary_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"Conv3d_1a_7x7.conv3d.weight": _Payload()}, fh)
    with pytest.raises(DataError, match="refused to unpickle|not a readable"):
        load_i3d("rgb", str(path))


def test_registry_hash_is_enforced(tmp_path, monkeypatch, rgb_net):
    _save(rgb_net.state_dict(), tmp_path / "rgb_imagenet.pt")
    (tmp_path / "registry.json").write_text(
        '{"checkpoints": {"rgb_imagenet": {"file": "rgb_imagenet.pt", "stream": "rgb", "sha256": "'
        + "0" * 64
        + '", "origin": "test"}, "flow_imagenet": {"file": "flow_imagenet.pt", "stream": "flow", '
        '"sha256": null, "origin": "somewhere"}}}'
    )
    monkeypatch.setenv("WTAL_MODELS_DIR", str(tmp_path))
    with pytest.raises(DataError, match="does not match the registry"):
        load_i3d("rgb", "rgb_imagenet")
    with pytest.raises(DataError, match="is not in.*download somewhere"):
        load_i3d("flow", "flow_imagenet")
    with pytest.raises(DataError, match="checkpoint file not found.*rgb_imagenet, flow_imagenet"):
        load_i3d("rgb", str(tmp_path / "missing.pt"))


def test_random_weights_are_seeded_and_flagged():
    state = torch.random.get_rng_state()
    a, info = load_i3d("rgb", None)
    b, _ = load_i3d("rgb", None)
    assert torch.equal(torch.random.get_rng_state(), state)  # the user's global RNG is left alone
    assert info.is_random and info.sha256 is None and info.random_seed == 0 and info.cache_key == "random-seed0"
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), ka
    with torch.inference_mode():  # He init keeps features O(1) (PyTorch's default gives ~1e-6)
        assert a.features(torch.rand(1, 3, 16, 64, 64) * 2 - 1).abs().mean() > 0.1
