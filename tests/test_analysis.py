"""What the notebooks compute with: search run folders, rank studies and training curves read back, per-image
results, overlays and tables."""
import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau
from torch import nn

from hyctas_lightning.evaluation import per_class_iou
from hyctas_lightning.evaluation.per_image import class_lookup, image_iou, predict_labels
from hyctas_lightning.ranking import kendall_tau, read_rank_study
from hyctas_lightning.search import Journal, SearchConfig, search_with
from hyctas_lightning.search.results import read_search_run
from hyctas_lightning.training.curves import read_curves
from hyctas_lightning.training.prediction import overlay
from hyctas_lightning.viz import Table
from hyctas_lightning.viz.tables import MIME
from test_search import SPACE, toy_measure


@pytest.fixture(scope="module")
def search_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("search")
    config = SearchConfig(population=8, generations=4, seed=1, latency_backend="cpu", top_k=3)
    (out / "config.json").write_text(json.dumps({"search": {**config.to_dict(), "from_a_newer_version": 1},
                                                 "space": SPACE.to_dict()}))
    search_with(toy_measure, SPACE, config, Journal(out / "candidates.jsonl"), out, show_progress=False)
    return out


def test_a_search_folder_reads_back_as_the_search_wrote_it(search_folder):
    run = read_search_run(search_folder)
    assert run.space == SPACE and run.config.population == 8
    written = json.loads((search_folder / "pareto.json").read_text())
    by_miou = sorted(written, key=lambda e: -e["objectives"]["miou"])
    assert [ind.candidate.hash for ind in run.front] == [e["hash"] for e in by_miou]
    assert {c.hash for c in run.picks()} == {p.stem.split("_")[1] for p in (search_folder / "topk").glob("*.json")}
    table = run.front_table()
    assert table.column("hash") == [ind.candidate.hash for ind in run.front]
    assert run.history_table().column("hypervolume") == [row["hypervolume"] for row in run.history]
    assert run.candidate(written[0]["hash"]).hash == written[0]["hash"]
    with pytest.raises(KeyError, match="no candidate"):
        run.candidate("0" * 16)


def test_a_running_search_is_read_without_touching_it(search_folder, tmp_path):
    """No history.json yet and a journal line being written: the history comes from the journal, equal to what the
    search itself records, and the files are left as they are."""
    live = tmp_path / "live"
    live.mkdir()
    (live / "config.json").write_bytes((search_folder / "config.json").read_bytes())
    journal = (search_folder / "candidates.jsonl").read_text() + '{"hash": "cut sho'
    (live / "candidates.jsonl").write_text(journal)
    run = read_search_run(live)
    assert (live / "candidates.jsonl").read_text() == journal and not (live / "history.json").exists()
    written = json.loads((search_folder / "history.json").read_text())
    assert [{k: r[k] for k in ("generation", "evaluations", "front")} for r in run.history] == \
        [{k: r[k] for k in ("generation", "evaluations", "front")} for r in written]
    assert [r["hypervolume"] for r in run.history] == pytest.approx([r["hypervolume"] for r in written])
    assert run.plot_hypervolume().axes and run.plot().axes
    with pytest.raises(FileNotFoundError, match="not a search run folder"):
        read_search_run(tmp_path)


def test_rank_study_from_a_ranking_report(tmp_path):
    members = {"largest": {"supernet_miou": 0.9, "standalone_miou": 0.1},
               "random0": {"supernet_miou": 0.1, "standalone_miou": 0.5},
               "random1": {"supernet_miou": 0.2, "standalone_miou": 0.4},
               "random2": {"supernet_miou": 0.3, "standalone_miou": 0.7},
               "random3": {"supernet_miou": 0.4, "standalone_miou": None}}
    (tmp_path / "report.json").write_text(json.dumps({"variants": {"sandwich": {"members": members}}}))
    study = read_rank_study(tmp_path)
    assert [p.name for p in study.pairs] == ["random0", "random1", "random2"]  # no extremes, no unfinished
    assert study.tau("sandwich") == pytest.approx(kendalltau([0.1, 0.2, 0.3], [0.5, 0.4, 0.7])[0])
    assert study.tau_table().records() == [{"group": "sandwich", "pairs": 3, "kendall_tau": study.tau()}]
    assert math.isnan(kendall_tau([0.1], [0.2])) and math.isnan(kendall_tau([0.1, 0.1], [0.2, 0.3]))
    assert study.plot().axes


def test_rank_study_from_a_pipeline_run_folder(tmp_path):
    """A `hyctas pipeline` run's results.json: the rank stage's architectures, then the retrained searched networks
    it does not hold already; baselines have no estimate."""
    def row(name, key, estimate, retrained):
        return {"name": name, "hash": key, "estimate": {"miou": estimate, "latency_ms": 1.0}, "miou_mean": retrained}

    results = {"rank": {"architectures": [row("rank_01", "a", 0.2, 0.5), row("rank_02", "b", 0.3, 0.7),
                                          row("rank_03", "c", 0.1, 0.6)]},
               "networks": {"searched_1": {"kind": "searched", "key": "b", "estimate": {"miou": 0.3},
                                           "miou_mean": 0.71},
                            "searched_2": {"kind": "searched", "key": "d", "estimate": {"miou": 0.4},
                                           "miou_mean": 0.8},
                            "lraspp": {"kind": "baseline", "key": "lraspp", "estimate": None, "miou_mean": 0.6}}}
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(results))
    study = read_rank_study(run)
    assert [(p.name, p.estimate, p.retrained) for p in study.pairs] == [
        ("rank_01", 0.2, 0.5), ("rank_02", 0.3, 0.7), ("rank_03", 0.1, 0.6), ("searched_2", 0.4, 0.8)]
    assert study.groups == ["run"] and study.tau() == pytest.approx(kendalltau([0.2, 0.3, 0.1, 0.4],
                                                                               [0.5, 0.7, 0.6, 0.8])[0])
    with pytest.raises(FileNotFoundError, match="no rank-correlation study"):
        read_rank_study(tmp_path)


def test_curves_from_tensorboard_and_csv_merge_by_step(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    for step in range(4):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
    writer.close()
    resumed = tmp_path / "tb" / "version_1"
    resumed.mkdir()
    (resumed / "metrics.csv").write_text("epoch,step,train/loss,val/mIoU\n0,3,0.2,\n0,4,0.1,\n0,4,,0.5\n")
    curves = read_curves(tmp_path / "tb")
    assert curves["train/loss"].steps == (0, 1, 2, 3, 4)
    assert curves["train/loss"].values == pytest.approx((1.0, 0.5, 1 / 3, 0.2, 0.1))  # step 3 from the later file
    assert curves["val/mIoU"].steps == (4,) and curves["val/mIoU"].last == 0.5
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
        read_curves(tmp_path / "empty")


class StrideNet(nn.Module):
    """Logits at the input size, and a refusal of sizes its strides cannot take."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        assert x.shape[-2] % 32 == 0 and x.shape[-1] % 32 == 0, x.shape
        return self.conv(x)


def test_predictions_at_the_image_size_and_per_image_iou():
    image = torch.randn(3, 70, 90)
    labels = predict_labels(StrideNet().eval(), image)
    assert labels.shape == (70, 90)
    target = torch.randint(0, 4, (70, 90))
    target[:5] = 255
    metric = per_class_iou(4)
    metric.update(labels[None], target[None])
    assert torch.allclose(image_iou(labels, target, 4), metric.compute().double(), equal_nan=True)


def test_class_lookup_renames_and_ignores():
    lookup = class_lookup(["road", "person", "dog"], ["person_x", "road", "pedestrian"], {"person": "pedestrian"})
    assert lookup[torch.tensor([0, 1, 2, 255])].tolist() == [1, 2, 255, 255]
    with pytest.raises(ValueError, match="does not have"):
        class_lookup(["a"], ["b"], {"a": "c"})


def test_overlay_leaves_unlabelled_pixels_alone():
    rgb = np.full((2, 3, 3), 100, np.uint8)
    labels = np.array([[0, 1, 255], [1, 0, 255]])
    out = overlay(rgb, labels, [(0, 0, 0), (200, 200, 200)], alpha=0.5)
    assert out.shape == rgb.shape and out[0, 2].tolist() == [100, 100, 100]
    assert out[0, 0].tolist() == [50, 50, 50] and out[0, 1].tolist() == [150, 150, 150]
    with pytest.raises(ValueError, match="differ in size"):
        overlay(rgb, labels[:, :2], [(0, 0, 0)])


def test_table_shows_as_html_text_and_json():
    table = Table(["name", "value"], [["<a>", 0.123456], ["b", float("nan")], ["c", np.float32(2.0)]], title="t")
    bundle = table._repr_mimebundle_()
    assert bundle[MIME] == {"title": "t", "columns": ["name", "value"], "rows": [["<a>", 0.123456], ["b", None],
                                                                                 ["c", 2.0]]}
    assert "&lt;a&gt;" in bundle["text/html"] and "0.1235" in str(table) and "-" in str(table)
    assert table.column("value")[2] == 2.0 and table.records()[0] == {"name": "<a>", "value": 0.123456}
    assert Table.from_records([{"a": 1}, {"b": 2}]).rows == [[1, None], [None, 2]]
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        Table(["a", "b"], [[1]])
