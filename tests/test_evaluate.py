"""The evaluator against hand-computed cases and an independent loop-by-loop port of the protocol,
on the real THUMOS14 and ActivityNet v1.2 annotation files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wtal_pipe.data.annotations import load_annotations
from wtal_pipe.errors import DataError
from wtal_pipe.evaluation.evaluate import evaluate, evaluate_files, interpolated_ap, read_detections
from wtal_pipe.inference.detections import DetectionTable
from wtal_pipe.intervals import parse_tiou

FIXTURES = Path(__file__).parent / "fixtures"


def reference_ap(gt: list[dict], preds: list[dict], thresholds) -> np.ndarray:
    """Plain transcription of ActivityNet's compute_average_precision_detection (loops, no tricks)."""
    ap = np.zeros(len(thresholds))
    if not preds:
        return ap
    npos = float(len(gt))
    lock = np.ones((len(thresholds), len(gt))) * -1
    scores = np.array([p["score"] for p in preds])
    order = scores.argsort()[::-1]
    preds = [preds[i] for i in order]
    tp = np.zeros((len(thresholds), len(preds)))
    fp = np.zeros((len(thresholds), len(preds)))
    for idx, pred in enumerate(preds):
        gt_idx = [j for j, g in enumerate(gt) if g["video"] == pred["video"]]
        if not gt_idx:
            fp[:, idx] = 1
            continue
        segs = np.array([gt[j]["segment"] for j in gt_idx])
        t1 = np.maximum(pred["segment"][0], segs[:, 0])
        t2 = np.minimum(pred["segment"][1], segs[:, 1])
        inter = (t2 - t1).clip(0)
        union = (segs[:, 1] - segs[:, 0]) + (pred["segment"][1] - pred["segment"][0]) - inter
        tiou = inter / union
        sorted_idx = tiou.argsort()[::-1]
        for t, thr in enumerate(thresholds):
            for jdx in sorted_idx:
                if tiou[jdx] < thr:
                    fp[t, idx] = 1
                    break
                if lock[t, gt_idx[jdx]] >= 0:
                    continue
                tp[t, idx] = 1
                lock[t, gt_idx[jdx]] = idx
                break
            if fp[t, idx] == 0 and tp[t, idx] == 0:
                fp[t, idx] = 1
    tp_c, fp_c = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    for t in range(len(thresholds)):
        rec, prec = tp_c[t] / npos, tp_c[t] / (tp_c[t] + fp_c[t])
        mprec = np.hstack([[0], prec, [0]])
        mrec = np.hstack([[0], rec, [1]])
        for i in range(len(mprec) - 1)[::-1]:
            mprec[i] = max(mprec[i], mprec[i + 1])
        i = np.where(mrec[1:] != mrec[:-1])[0] + 1
        ap[t] = np.sum((mrec[i] - mrec[i - 1]) * mprec[i])
    return ap


def _random_detections(database: dict, subset: str, rng: np.random.Generator, per_video: int) -> dict:
    labels = sorted({a["label"] for v in database.values() if v["subset"] == subset for a in v["annotations"]})
    results = {}
    for vid, video in database.items():
        if video["subset"] != subset:
            continue
        dets = []
        duration = max([a["segment"][1] for a in video["annotations"]] + [60.0])
        for ann in video["annotations"]:  # jittered copies of GT: many TPs, duplicates, near misses
            s, e = ann["segment"]
            for _ in range(int(rng.integers(0, 3))):
                jitter = rng.normal(0, 0.25 * (e - s), 2)
                dets.append(
                    {
                        "label": ann["label"],
                        "score": float(rng.random()),
                        "segment": [float(s + jitter[0]), float(max(s + jitter[0] + 0.1, e + jitter[1]))],
                    }
                )
        for _ in range(int(rng.integers(0, per_video))):  # random proposals of random classes
            s = float(rng.uniform(0, duration))
            dets.append(
                {
                    "label": str(rng.choice(labels)),
                    "score": float(rng.random()),
                    "segment": [s, s + float(rng.exponential(5.0)) + 0.05],
                }
            )
        results[vid] = dets
    return {"version": "test", "results": results, "external_data": {}}


def _file(database: dict, detections: dict, subset: str, thresholds, known_classes=None):
    """Detections as a result file holds them, evaluated (what wtal evaluate does)."""
    return evaluate(database, read_detections(detections, database, known_classes), subset, thresholds)


def _check_against_reference(database, subset, detections, thresholds):
    result = _file(database, detections, subset, thresholds)
    for c, label in enumerate(result.classes):
        gt = [
            {"video": vid, "segment": a["segment"]}
            for vid, v in database.items()
            if v["subset"] == subset
            for a in v["annotations"]
            if a["label"] == label
        ]
        preds = [
            {"video": vid, "segment": d["segment"], "score": d["score"]}
            for vid, dets in detections["results"].items()
            for d in dets
            if d["label"] == label
        ]
        np.testing.assert_allclose(result.ap[c], reference_ap(gt, preds, thresholds), atol=1e-9, err_msg=label)
    return result


@pytest.mark.parametrize("seed", range(4))
def test_thumos14_random_detections_match_reference(seed):
    database = load_annotations(FIXTURES / "thumos14_gt.json")
    detections = _random_detections(database, "test", np.random.default_rng(seed), per_video=40)
    result = _check_against_reference(database, "test", detections, parse_tiou("0.1:0.7:0.1"))
    assert len(result.classes) == 20 and 0 < result.average_map < 1


def test_activitynet12_random_detections_match_reference():
    database = load_annotations(FIXTURES / "activitynet12.min.json")
    subset = {vid: v for i, (vid, v) in enumerate(database.items()) if v["subset"] == "validation" and i % 8 == 0}
    detections = _random_detections(subset, "validation", np.random.default_rng(7), per_video=10)
    result = _check_against_reference(subset, "validation", detections, parse_tiou("0.5:0.95:0.05"))
    assert len(result.thresholds) == 10


def test_thumos_string_segments_and_cliffdiving_duplicates():
    database = load_annotations(FIXTURES / "thumos14_gt.json")
    cliff = [
        (vid, a["segment"])
        for vid, v in database.items()
        if v["subset"] == "test"
        for a in v["annotations"]
        if a["label"] == "CliffDiving"
    ]
    assert cliff and all(isinstance(s[0], float) for _, s in cliff)
    # predicting every CliffDiving instance perfectly as CliffDiving AND Diving
    results = {}
    for vid, seg in cliff:
        results.setdefault(vid, []).append({"label": "CliffDiving", "score": 0.9, "segment": seg})
        results[vid].append({"label": "Diving", "score": 0.8, "segment": seg})
    result = _file(database, {"results": results}, "test", [0.5])
    by_class = dict(zip(result.classes, result.ap[:, 0]))
    assert by_class["CliffDiving"] == pytest.approx(1.0)
    n_diving = sum(a["label"] == "Diving" for v in database.values() if v["subset"] == "test" for a in v["annotations"])
    assert by_class["Diving"] == pytest.approx(len(cliff) / n_diving)  # precision 1 up to that recall


GT = {
    "v1": {
        "subset": "test",
        "annotations": [{"label": "a", "segment": [0.0, 10.0]}, {"label": "a", "segment": [20.0, 30.0]}],
    },
    "v2": {"subset": "test", "annotations": [{"label": "b", "segment": [5.0, 15.0]}]},
    "v3": {"subset": "test", "annotations": []},
    "x": {"subset": "train", "annotations": [{"label": "c", "segment": [0.0, 1.0]}]},
}


def _ap(results, thresholds=(0.5,)):
    result = _file(GT, {"results": results}, "test", thresholds)
    return dict(zip(result.classes, result.ap[:, 0])), result


def test_hand_computed_duplicates_are_false_positives():
    ap, _ = _ap(
        {
            "v1": [
                {"label": "a", "score": 0.9, "segment": [0, 10]},
                {"label": "a", "score": 0.8, "segment": [0, 10]},  # duplicate -> FP
                {"label": "a", "score": 0.7, "segment": [20, 30]},
            ]
        }
    )
    # P/R: (1, .5) (.5, .5) (.667, 1) -> envelope: .5 * 1 + .5 * .667
    assert ap["a"] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_hand_computed_tiou_exactly_at_threshold_counts():
    ap, _ = _ap({"v1": [{"label": "a", "score": 0.9, "segment": [5, 15]}]}, thresholds=(1 / 3,))
    assert ap["a"] == pytest.approx(0.5)  # tIoU 5/15 = 1/3 >= 1/3: a TP at recall 0.5


def test_hand_computed_best_iou_gt_is_taken_first():
    # one detection overlapping two GTs takes the higher-tIoU one; the second detection gets the other
    gt = {
        "v": {"subset": "test", "annotations": [{"label": "a", "segment": [0, 10]}, {"label": "a", "segment": [8, 20]}]}
    }
    dets = {"v": [{"label": "a", "score": 0.9, "segment": [7, 20]}, {"label": "a", "score": 0.5, "segment": [0, 9]}]}
    result = _file(gt, {"results": dets}, "test", [0.5])
    assert result.ap[0, 0] == pytest.approx(1.0)


def test_class_without_detections_scores_zero_and_video_without_gt_is_fp():
    ap, result = _ap(
        {
            "v1": [{"label": "a", "score": 0.9, "segment": [0, 10]}],
            "v3": [{"label": "a", "score": 0.95, "segment": [0, 10]}],  # no GT there: FP first
            "elsewhere": [{"label": "b", "score": 0.99, "segment": [5, 15]}],
        }
    )  # not in subset: FP
    assert ap["a"] == pytest.approx(0.5 * 0.5)  # first FP, then TP at P=0.5, R=0.5
    assert ap["b"] == 0.0
    assert result.classes == ["a", "b"]  # "c" lives in another subset
    assert result.average_map == pytest.approx((0.25 + 0.0) / 2)


def test_detections_of_classes_without_gt_in_the_subset_do_not_count():
    # "c" is annotated only in the training subset; "d" is a class of the run, annotated nowhere
    dets = {
        "v1": [
            {"label": "a", "score": 0.9, "segment": [0, 10]},
            {"label": "c", "score": 0.99, "segment": [0, 1]},
            {"label": "d", "score": 0.98, "segment": [0, 10]},
        ]
    }
    result = _file(GT, {"results": dets}, "test", [0.5], known_classes=["a", "b", "c", "d"])
    assert result.classes == ["a", "b"] and result.ignored == {"c": 1, "d": 1}
    assert dict(zip(result.classes, result.ap[:, 0]))["a"] == pytest.approx(0.5)  # unchanged by them
    assert "not counted: 2 detections of 2 class(es)" in result.table()


def test_interpolated_ap_envelope():
    assert interpolated_ap(np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == pytest.approx(0.5 + 1 / 3)


def test_unknown_label_and_bad_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "dets.json"
    bad.write_text(json.dumps({"results": {"v1": [{"label": "zebra", "score": 1, "segment": [0, 1]}]}}))
    (tmp_path / "gt.json").write_text(json.dumps({"database": GT}))
    with pytest.raises(DataError, match="dets.json: video v1: label 'zebra' is not a class of the ground truth"):
        evaluate_files(bad, tmp_path / "gt.json", "test")
    with pytest.raises(DataError, match="detections file not found"):
        evaluate_files(tmp_path / "none.json", tmp_path / "gt.json", "test")
    with pytest.raises(DataError, match="bad --tiou"):
        parse_tiou("0.1-0.7")


def test_tiou_ranges_are_inclusive():
    np.testing.assert_allclose(parse_tiou("0.1:0.7:0.1"), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    assert len(parse_tiou("0.5:0.95:0.05")) == 10
    np.testing.assert_allclose(parse_tiou("0.3,0.5"), [0.3, 0.5])


def test_evaluate_cli_json(tmp_path, run_cli):
    (tmp_path / "gt.json").write_text(json.dumps({"database": GT}))
    (tmp_path / "d.json").write_text(json.dumps({"results": {"v1": [{"label": "a", "score": 1, "segment": [0, 10]}]}}))
    code, out, _ = run_cli("evaluate", tmp_path / "d.json", "--gt", tmp_path / "gt.json", "--tiou", "0.5", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["per_class_AP"]["a"]["0.5"] == pytest.approx(0.5) and report["average_mAP"] == pytest.approx(0.25)


def test_a_runs_table_scores_as_its_written_file(tmp_path):
    """``wtal test`` evaluates its detection columns directly; that must equal evaluating the file it wrote
    (rounding, tie order, videos outside the ground truth, classes without ground truth, ``set_aside=``)."""
    database = load_annotations(FIXTURES / "thumos14_gt.json")
    rng = np.random.default_rng(3)
    test_videos = [vid for vid, v in database.items() if v["subset"] == "test"][:40]
    gt_classes = sorted({a["label"] for vid in test_videos for a in database[vid]["annotations"]})
    classes = [*gt_classes, "NotInThisSubset"]
    table = DetectionTable(classes, {"method": "um"})
    for vid in [*test_videos, "video_without_ground_truth"]:
        found = []
        for _ in range(int(rng.integers(0, 30))):
            start = float(rng.uniform(0, 200))
            score = float(rng.choice([0.5, rng.uniform()]))  # many exact ties
            found.append((int(rng.integers(len(classes))), score, start, start + float(rng.uniform(0.1, 30))))
        table.add(vid, found)
    table.write_json(tmp_path / "dets.json")
    written = json.loads((tmp_path / "dets.json").read_text())
    assert written == table.to_json() and written["external_data"] == {"method": "um"}
    assert len(written["results"]) == 41 and sum(map(len, written["results"].values())) == len(table)
    known = set(gt_classes) | {"NotInThisSubset"}
    for aside in ((), test_videos[::2]):
        from_table = evaluate(database, table, "test", parse_tiou("0.1:0.7:0.1"), set_aside=aside)
        from_file = evaluate(
            database, read_detections(written, database, list(known)), "test", parse_tiou("0.1:0.7:0.1"), aside
        )
        np.testing.assert_array_equal(from_table.ap, from_file.ap)
        assert from_table.classes == from_file.classes and from_table.ignored == from_file.ignored
        assert from_table.set_aside == from_file.set_aside
        assert from_table.ignored["NotInThisSubset"] > 0 and 0 < from_table.average_map < 1
    assert next(iter(table.per_video()))[1] == [
        (classes.index(d["label"]), d["score"], *d["segment"]) for d in written["results"][test_videos[0]]
    ]


def test_an_empty_table_writes_valid_json_and_scores_zero(tmp_path):
    database = load_annotations(FIXTURES / "thumos14_gt.json")
    table = DetectionTable(["BaseballPitch"])
    table.write_json(tmp_path / "dets.json")
    assert json.loads((tmp_path / "dets.json").read_text())["results"] == {}
    assert evaluate(database, table, "test").average_map == 0.0


def test_detections_outside_the_subset_are_false_positives_as_in_the_reference(tmp_path):
    """The ActivityNet rule: every detection on a video without ground truth of its class is a false positive,
    whether the video is in another subset or in no annotation at all; the file path agrees with the
    reference transcription (#30: it once dropped them, up to 1.3e-3 off)."""
    database = load_annotations(FIXTURES / "thumos14_gt.json")
    rng = np.random.default_rng(11)
    detections = _random_detections(database, "test", rng, per_video=20)
    labels = sorted({a["label"] for v in database.values() if v["subset"] == "test" for a in v["annotations"]})
    others = [*[vid for vid, v in database.items() if v["subset"] == "train"][:30], "not_annotated_anywhere"]
    for vid in others:
        detections["results"][vid] = [
            {"label": str(rng.choice(labels)), "score": float(rng.random()), "segment": [s, s + 3.0]}
            for s in rng.uniform(0, 100, 15).tolist()
        ]
    (tmp_path / "d.json").write_text(json.dumps(detections))
    from_file = evaluate_files(tmp_path / "d.json", FIXTURES / "thumos14_gt.json", "test", parse_tiou("0.1:0.7:0.1"))
    reference = _check_against_reference(database, "test", detections, parse_tiou("0.1:0.7:0.1"))
    np.testing.assert_array_equal(from_file.ap, reference.ap)
    without = _file(
        database,
        {"results": {v: d for v, d in detections["results"].items() if v not in others}},
        "test",
        parse_tiou("0.1:0.7:0.1"),
    )
    assert without.average_map - from_file.average_map > 1e-4  # the extra false positives count


def test_only_videos_set_aside_take_their_detections_with_them(tmp_path, run_cli):
    gt = {
        "v1": {"subset": "test", "annotations": [{"label": "a", "segment": [0, 10]}]},
        "v2": {"subset": "test", "labels": ["a"]},
        "t1": {"subset": "train", "annotations": [{"label": "a", "segment": [0, 10]}]},
    }
    (tmp_path / "gt.json").write_text(json.dumps({"database": gt}))
    found = {
        "v1": [{"label": "a", "score": 0.9, "segment": [0, 10]}],
        "v2": [{"label": "a", "score": 0.95, "segment": [0, 10]}] * 2,  # labels only: set aside
        "t1": [{"label": "a", "score": 0.99, "segment": [0, 10]}],  # another subset: a false positive
    }
    (tmp_path / "d.json").write_text(json.dumps({"results": found}))
    code, out, _ = run_cli(
        "evaluate", tmp_path / "d.json", "--gt", tmp_path / "gt.json", "--tiou", "0.5", "--skip-unannotated"
    )
    assert code == 0 and "50.00" in out  # the FP on t1 ranks first: AP 0.5
    assert "set aside: 2 detections on 1 video(s) with labels but no segments" in out
