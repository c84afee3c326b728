"""Method settings split by purpose: one name, one group; types, choices and bounds checked in one place;
traits are no settings; a setting a method does not use is refused; runs of the earlier flat format load."""

from __future__ import annotations

import pickle

import pytest
import torch

from wtal_pipe.errors import WtalError
from wtal_pipe.features.config import ExtractionConfig
from wtal_pipe.features.plan import FeatureIdentity, StageKeys, VideoPlan
from wtal_pipe.methods import get_method, list_methods
from wtal_pipe.methods.settings import GROUPS, LocalizationSettings, TrainingSettings
from wtal_pipe.run import CHECKPOINT, load_run

from .planted import write_planted_dataset


def test_a_setting_name_in_two_groups_is_caught_where_names_meet():
    from dataclasses import dataclass

    from wtal_pipe.methods.settings import Settings, owners
    from wtal_pipe.training.pseudo import PseudoLabelSettings

    @dataclass(frozen=True)
    class Clashing(Settings):
        lr: float = 1.0

    groups = get_method("um").setting_groups()
    assert owners({**groups, "pseudo-labels": PseudoLabelSettings})["keep_ratio"] == "pseudo-labels"
    with pytest.raises(ValueError, match="setting 'lr' belongs to both training and clashing"):
        owners({**groups, "clashing": Clashing})


@pytest.mark.parametrize("name", list_methods())
def test_every_setting_belongs_to_one_group(name):
    cls = get_method(name)
    groups = cls.setting_groups()
    seen = [n for group in groups.values() for n in group.names()]
    assert len(seen) == len(set(seen)) and set(groups) == set(GROUPS)
    values = cls.defaults().values()
    assert set(values) == set(seen) and not {"uses_clicks", "has_background_class"} & set(values)


def test_official_defaults_and_overrides_by_name():
    um = get_method("um").configure({"lr": 1e-3, "nms_threshold": 0.5, "margin": 50.0})
    assert um.training.lr == 1e-3 and um.training.iterations == 10000
    assert um.localization.nms_threshold == 0.5 and um.localization.eval_tiou == "0.1:0.7:0.1"
    assert um.network.margin == 50.0 and um.network.hidden_dim == 2048
    assert get_method("basnet").defaults().training.batch_order == "fresh"
    assert get_method("cmcs").defaults().training.batch_order == "epochs"


@pytest.mark.parametrize(
    ("method", "changes", "message"),
    [
        ("cmcs", {"hidden_dim": 64}, "cmcs has no setting.* hidden_dim"),
        ("um", {"leaky_slope": 0.2}, "um has no setting.* leaky_slope"),
        ("basnet", {"uses_clicks": False}, "basnet has no setting.* uses_clicks"),
        ("basnet", {"train_sampling": "randm"}, "train_sampling='randm' is not a valid one of random"),
        ("basnet", {"batch_size": 0}, "batch_size=0 must be at least 1"),
        ("basnet", {"lr": 0.0}, "lr=0.0 must be above 0"),
        ("basnet", {"dropout": 1.0}, "dropout=1.0 must be below 1"),
        ("basnet", {"cas_thresholds": []}, "cas_thresholds needs at least one value"),
        ("basnet", {"cas_thresholds": [0.1, 5]}, "above 1 never select anything"),
        ("basnet", {"class_threshold": 5}, "class_threshold=5 must be below 1"),
        ("basnet", {"upsample": 0}, "upsample=0 must be at least 1"),
        ("basnet", {"actionness_thresholds": [0.5]}, "basnet has no actionness score"),
        ("cmcs", {"batch_size": 4}, "whole-video training .* needs --batch-size 1"),
        ("backtal", {"affinity_operator": "paper"}, "affinity_operator='paper' is not a valid one of"),
        ("um", {"nms_threshold": float("nan")}, "must be finite"),
        ("um", {"eval_tiou": "0.1-0.7"}, "setting eval_tiou='0.1-0.7': bad --tiou"),  # at training, not at test
    ],
)
def test_bad_settings_are_one_line_errors(method, changes, message):
    with pytest.raises(WtalError, match=message) as error:
        get_method(method).configure(changes)
    assert "\n" not in str(error.value)


def test_groups_are_typed_and_frozen():
    settings = LocalizationSettings(cas_thresholds=[0, 0.1])
    assert settings.cas_thresholds == (0.0, 0.1) and all(type(v) is float for v in settings.cas_thresholds)
    with pytest.raises(AttributeError):
        settings.nms_threshold = 0.1  # type: ignore[misc]
    assert TrainingSettings(lr=1).lr == 1  # an int is a number
    with pytest.raises(WtalError, match="is not a valid true/false"):
        TrainingSettings(normalize_features=1)  # type: ignore[arg-type]


def _run_with_flat_settings(tmp_path):
    """A run as wtal-pipe/2 wrote it: settings in one flat dict, traits and unused widths included."""
    from wtal_pipe.run import FORMAT, RunMeta, checkpoint_digest

    method = get_method("cmcs")
    model = method(32, 3, method.configure({}))
    flat = {**method.defaults().values(), "uses_clicks": False, "has_background_class": True, "hidden_dim": 2048}
    flat["nms_threshold"] = None
    meta = RunMeta("cmcs", flat, 32, ["a", "b", "c"], str(tmp_path), None, format="wtal-pipe/2")
    record = meta.to_dict()
    state = model.state_dict()
    (tmp_path / "run").mkdir()
    torch.save(
        {**record, "state_dict": state, "digest": checkpoint_digest(record, state)}, tmp_path / "run" / CHECKPOINT
    )
    assert FORMAT != "wtal-pipe/2"
    return tmp_path / "run"


def test_a_run_of_the_flat_format_loads_and_only_localization_changes_at_test(tmp_path):
    run = _run_with_flat_settings(tmp_path)
    model, meta = load_run(run, overrides={"class_threshold": 0.3})
    assert meta.method == "cmcs" and model.config.localization.class_threshold == 0.3
    assert model.config.network.fusion == "late" and model.config.training.accumulate == 24
    with pytest.raises(WtalError, match="embed_dim change the trained weights' meaning"):
        load_run(run, overrides={"embed_dim": 8})
    with pytest.raises(WtalError, match="lr change the trained weights' meaning"):
        load_run(run, overrides={"lr": 1.0})


def test_cli_test_refuses_a_setting_that_changes_the_weights(tmp_path, run_cli):
    write_planted_dataset(tmp_path / "data", feature_dim=16, n_train=4, n_test=2)
    code, _, err = run_cli(
        "train", "--method", "um", "--data", tmp_path / "data", "--out", tmp_path / "r", "--iters", "1",
        "--set", "hidden_dim=16", "--num-segments", "16", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli("test", "--run", tmp_path / "r", "--data", tmp_path / "data", "--set", "hidden_dim=32")
    assert code == 2 and "hidden_dim change the trained weights' meaning" in err and err.count("\n") == 1


def test_a_plan_owns_the_keys_and_paths_and_travels(make_clip, tmp_path):
    clip = make_clip("v.mp4", seconds=1.0)
    identity = FeatureIdentity("fp32", "random-seed0", "random-seed0")
    plan = VideoPlan.build(clip, tmp_path / "data", ExtractionConfig(), identity, force=True)
    assert plan.forced == {"frames", "flow", "features"} and pickle.loads(pickle.dumps(plan)) == plan
    assert plan.keys == StageKeys.derive(plan.fingerprint, ExtractionConfig(), identity)
    assert plan.flow.data.name == f"flow-{plan.keys.flow}.npy" and plan.frames.record.suffix == ".json"
    assert plan.flow_part(0, 10).data.name == f"flow-{plan.keys.flow}.0-10.npy"
    assert plan.features.data == tmp_path / "data" / "features" / "v.npy"
    other = StageKeys.derive(plan.fingerprint, ExtractionConfig().replace(preset="dis"), identity)
    assert other.frames == plan.keys.frames and other.flow != plan.keys.flow  # a new flow reuses the frames


def test_a_grouped_run_with_a_retired_setting_still_loads():
    """Runs of wtal-pipe/3 recorded BackTAL's top-k as ``topk_divisor`` before it became ``topk_ratio``."""
    backtal = get_method("backtal")
    saved = backtal.defaults().to_dict()
    saved["network"] = {k: v for k, v in saved["network"].items() if k != "topk_ratio"} | {"topk_divisor": 8}
    assert backtal.from_saved(saved).network == backtal.defaults().network
