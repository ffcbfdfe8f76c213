"""PQ / SQ / RQ: equal to cityscapesscripts' panoptic evaluation on generated COCO-format files with crowds, void,
tiny, unmatched, split and relabelled segments; equal to torchmetrics where its rules coincide; the COCO rules on
hand-made cases."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.detection import PanopticQuality as TorchmetricsPQ

import fixtures_data as fx
from hyctas_lightning.data import DatasetError
from hyctas_lightning.data.labels import VOID
from hyctas_lightning.evaluation.panoptic_files import evaluate_panoptic_files, to_coco_panoptic, write_scores
from hyctas_lightning.evaluation.panoptic_quality import PanopticQuality, format_pq_table

reference = pytest.importorskip("cityscapesscripts.evaluation.evalPanopticSemanticLabeling")
GROUPS = ("All", "Things", "Stuff")


def reference_scores(paths: dict, out: Path) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return reference.evaluatePanoptic(str(paths["gt_json"]), str(paths["gt_dir"]), str(paths["pred_json"]),
                                          str(paths["pred_dir"]), str(out))


def assert_same(ours: dict, ref: dict) -> None:
    for group in GROUPS:
        assert ours[group]["n"] == ref[group]["n"]
        for key in ("pq", "sq", "rq"):
            assert ours[group][key] == pytest.approx(ref[group][key], abs=1e-6), (group, key)
    assert set(ours["per_class"]) == set(ref["per_class"])
    for category, values in ref["per_class"].items():
        for key in ("pq", "sq", "rq"):
            assert ours["per_class"][category][key] == pytest.approx(values[key], abs=1e-6), (category, key)


@pytest.mark.parametrize("seed", range(3))
def test_equals_cityscapesscripts_on_generated_files(tmp_path: Path, seed: int) -> None:
    paths = fx.coco_panoptic_predictions(tmp_path, seed=seed)
    scores, categories = evaluate_panoptic_files(**paths)
    ours = write_scores(scores, categories, tmp_path / "ours.json")
    assert_same(ours, reference_scores(paths, tmp_path / "ref.json"))
    assert json.loads((tmp_path / "ours.json").read_text())["All"] == ours["All"]
    # the fixture exercises every rule: matches, misses and false positives of things and of stuff
    for kind in (scores.thing, ~scores.thing):
        assert scores.tp[kind].sum() > 0 and scores.fp[kind].sum() > 0 and scores.fn[kind].sum() > 0


def test_crowds_matter_and_are_handled_like_the_reference(tmp_path: Path) -> None:
    """Without their crowd flags the same files score differently, and still equal to the reference."""
    paths = fx.coco_panoptic_predictions(tmp_path, seed=0)
    with_crowds = evaluate_panoptic_files(**paths)[0].to_dict()
    gt = json.loads(paths["gt_json"].read_text())
    for annotation in gt["annotations"]:
        for segment in annotation["segments_info"]:
            segment["iscrowd"] = 0
    paths["gt_json"].write_text(json.dumps(gt))
    scores, categories = evaluate_panoptic_files(**paths)
    assert scores.to_dict()["Things"] != with_crowds["Things"]
    assert_same(scores.to_dict([c["id"] for c in categories]), reference_scores(paths, tmp_path / "ref.json"))


def maps(*rows: str) -> torch.Tensor:
    """A panoptic map from rows of letters: a/b cars (class 0, instances 1/2), c a car crowd, r road (class 1 stuff),
    . void."""
    code = {"a": 1, "b": 2, "c": 0, "r": 1000, ".": VOID}
    return torch.tensor([[code[ch] for ch in row] for row in rows])


def scored(pred: torch.Tensor, target: torch.Tensor) -> dict:
    metric = PanopticQuality(num_classes=2, thing_ids=[0])
    metric.update(pred[None], target[None])
    s = metric.compute()
    return {"tp": s.tp.tolist(), "fp": s.fp.tolist(), "fn": s.fn.tolist(), "iou": s.iou.tolist()}


def test_iou_must_exceed_one_half() -> None:
    target = maps("aaaarrrr")
    assert scored(maps("aaaaaaaa"), target) == {"tp": [0, 0], "fp": [1, 0], "fn": [1, 1], "iou": [0.0, 0.0]}
    s = scored(maps("aaaaaaar"), target)
    assert s["tp"] == [1, 0] and s["iou"][0] == pytest.approx(4 / 7) and s["fn"] == [0, 1]


def test_void_is_left_out_of_the_union_and_mostly_void_predictions_are_ignored() -> None:
    target = maps("aa..rrrr")
    s = scored(maps("aaaarrrr"), target)            # a covers 2 void pixels: IoU 2 / (4 + 2 - 2 - 2) = 1
    assert s["tp"] == [1, 1] and s["iou"] == [1.0, 1.0]
    s = scored(maps("rrbbbrrr"), maps("rr...rrr"))   # b lies 2/3 on void: ignored, not a false positive
    assert s["fp"] == [0, 0]
    s = scored(maps("rrbbbbrr"), maps("rr...rrr"))   # 3/4 ... still ignored
    assert s["fp"] == [0, 0]
    s = scored(maps("rbbbbrrr"), maps("rr..rrrr"))   # exactly half on void: a false positive
    assert s["fp"] == [1, 0]


def test_crowds_are_never_counted_and_hide_predictions_of_their_class_only() -> None:
    target = maps("cccccrrr")
    assert scored(maps("aaaaarrr"), target)["fp"] == [0, 0]       # on the car crowd: ignored
    # road spilling over the car crowd: IoU 3/8, so a miss and a false positive (a crowd hides its class only)
    assert scored(maps("rrrrrrrr"), target) == {"tp": [0, 0], "fp": [0, 1], "fn": [0, 1], "iou": [0.0, 0.0]}
    s = scored(maps("rraaarrrrr"), maps("bbccrrrrrr"))               # a car 2/3 on the crowd: ignored
    assert s["tp"] == [0, 1] and s["fp"] == [0, 0] and s["fn"] == [1, 0]
    s = scored(maps("raaaarrrrr"), maps("bbccrrrrrr"))               # half on the crowd: a false positive
    assert s["tp"] == [0, 1] and s["fp"] == [1, 0] and s["fn"] == [1, 0]


def test_images_of_a_batch_never_match_each_other() -> None:
    metric = PanopticQuality(num_classes=2, thing_ids=[0])
    metric.update(torch.stack([maps("aaaarrrr"), maps("rrrrrrrr")]), torch.stack([maps("aaaarrrr"), maps("aaaarrrr")]))
    s = metric.compute()  # pooled, car a would be 4 of 8 pixels and match nowhere
    assert s.tp.tolist() == [1, 1] and s.fp.tolist() == [0, 1] and s.fn.tolist() == [1, 1]


def random_maps(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Target with void and a prediction without void, one segment per stuff class."""
    target = np.repeat(np.array([2, 3, 4])[:, None], 16, axis=1).repeat(8, 0) * 1000  # stuff bands, 24 x 16
    pred = target.copy()
    for instance in range(1, 6):
        k = int(rng.integers(0, 2))
        y, x, h, w = rng.integers(0, 18), rng.integers(0, 11), rng.integers(2, 7), rng.integers(2, 6)
        target[y:y + h, x:x + w] = k * 1000 + instance
        dy, dx = rng.integers(-2, 3, 2)
        pred[max(y + dy, 0):y + dy + h, max(x + dx, 0):x + dx + w] = int(rng.integers(0, 2)) * 1000 + instance
    target[rng.integers(0, 20):, :3] = VOID
    return torch.from_numpy(pred), torch.from_numpy(target)


def to_pairs(panoptic: torch.Tensor) -> torch.Tensor:
    return torch.stack([panoptic // 1000, panoptic % 1000], -1)


def test_agrees_with_torchmetrics_where_the_rules_coincide_and_not_on_crowds() -> None:
    rng = np.random.default_rng(0)
    ours, theirs = PanopticQuality(5, [0, 1]), TorchmetricsPQ(things={0, 1}, stuffs={2, 3, 4}, return_per_class=True,
                                                              return_sq_and_rq=True)
    for _ in range(8):
        pred, target = random_maps(rng)
        ours.update(pred[None], target[None])
        theirs.update(to_pairs(pred)[None], to_pairs(target)[None])
    per_class = theirs.compute().double()  # (classes, 3): pq, sq, rq
    scores = ours.compute()
    assert scores.tp.sum() > 5 and scores.fp.sum() > 5 and scores.fn.sum() > 5
    np.testing.assert_allclose(per_class.numpy(), np.stack([scores.pq, scores.sq, scores.rq], 1), atol=1e-6)
    # torchmetrics knows no crowds: the crowd, an ordinary segment there, is a car it counts as missed
    pred, target = maps("aarrrrrrrr"), maps("aaccrrrrrr")
    theirs = TorchmetricsPQ(things={0}, stuffs={1}, return_per_class=True)
    theirs.update(to_pairs(pred)[None], to_pairs(target)[None])
    ours = PanopticQuality(2, [0])
    ours.update(pred[None], target[None])
    assert ours.compute().pq[0] == 1.0 and theirs.compute().flatten()[0].item() == pytest.approx(2 / 3)


def test_table_and_dict() -> None:
    metric = PanopticQuality(num_classes=3, thing_ids=[0])
    metric.update(maps("aaaarrrr")[None], maps("aaabrrrr")[None])
    scores = metric.compute()
    table = format_pq_table(scores, ["car", "road", "sky"])
    assert "car     thing   50.00   75.00   66.67" in table and "sky     stuff       -" in table
    assert "Things      1   50.00" in table
    result = scores.to_dict(["car", "road", "sky"])
    assert result["All"]["n"] == 2 and result["Things"]["n"] == 1 and result["Stuff"]["n"] == 1
    assert result["per_class"]["sky"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 0, "fn": 0}
    assert result["Stuff"]["pq"] == 1.0 and 0 < result["Things"]["pq"] < 1
    with pytest.raises(ValueError, match="2 class names for 3"):
        format_pq_table(scores, ["car", "road"])


def test_to_coco_round_trip_and_file_errors(tmp_path: Path) -> None:
    panoptic = maps("aabbrr..", "aabbrrrr").numpy()
    png, segments = to_coco_panoptic(panoptic, [3, 40])
    assert [(s["category_id"], s["area"], s["bbox"]) for s in segments] == [(3, 4, [0, 0, 2, 2]),
                                                                           (3, 4, [2, 0, 2, 2]),
                                                                           (40, 6, [4, 0, 4, 2])]
    assert (png[0, 6:] == 0).all()
    paths = fx.coco_panoptic_predictions(tmp_path, images=2)
    pred = json.loads(paths["pred_json"].read_text())
    pred["annotations"][1]["segments_info"].pop()
    paths["pred_json"].write_text(json.dumps(pred))
    with pytest.raises(DatasetError, match="image_001.png does not match its segments_info"):
        evaluate_panoptic_files(**paths)
    pred["annotations"].pop()
    paths["pred_json"].write_text(json.dumps(pred))
    with pytest.raises(DatasetError, match="no prediction for image 'image_001'"):
        evaluate_panoptic_files(**paths)


def test_panoptic_eval_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from hyctas_lightning.cli import main
    from hyctas_lightning.cli.errors import EXIT_DATASET, EXIT_FILES

    paths = fx.coco_panoptic_predictions(tmp_path)
    args = ["panoptic-eval", "--gt-json", str(paths["gt_json"]), "--gt-dir", str(paths["gt_dir"]),
            "--pred-json", str(paths["pred_json"]), "--pred-dir", str(paths["pred_dir"])]
    assert main([*args, "--out", str(tmp_path / "result.json")]) == 0
    printed = capsys.readouterr().out
    assert "grass   stuff" in printed and "Things      3" in printed
    result = json.loads((tmp_path / "result.json").read_text())
    assert set(result) == {"All", "Things", "Stuff", "per_class"} and set(result["All"]) == {"pq", "sq", "rq", "n"}
    assert set(result["per_class"]) == {"3", "11", "5", "40", "41", "47"}  # the categories' own ids
    values = [v for group in GROUPS for k, v in result[group].items() if k != "n"]
    values += [v for scores in result["per_class"].values() for k, v in scores.items() if k in ("pq", "sq", "rq")]
    assert all(0 <= v <= 1 for v in values)
    assert_same({**result, "per_class": {int(k): v for k, v in result["per_class"].items()}},
                reference_scores(paths, tmp_path / "ref.json"))
    assert main([*args[:-1], str(tmp_path / "missing")]) == EXIT_FILES  # a missing PNG folder
    assert "missing" in capsys.readouterr().err
    pred = json.loads(paths["pred_json"].read_text())
    pred["annotations"].pop()
    paths["pred_json"].write_text(json.dumps(pred))
    assert main(args) == EXIT_DATASET  # an image without prediction
