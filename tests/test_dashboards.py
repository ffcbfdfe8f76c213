"""W&B dashboards, offline: what a search, a supernet training and a retraining leave in their runs' files."""
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger
from PIL import Image

from hyctas_lightning.cli import main
from hyctas_lightning.data import SYNTHETIC_CLASSES, SyntheticStreetDataModule
from hyctas_lightning.search import Journal, SearchCallback, SearchConfig, search_with
from hyctas_lightning.search_space import SearchSpace
from hyctas_lightning.training import SegmentationModule, SupernetModule
from test_search import SPACE, fast_config, toy_measure
from wandb_offline import read_offline_run


@pytest.fixture(autouse=True)
def offline_wandb(tmp_path, monkeypatch):
    """Offline runs with every W&B folder (staged artifacts included) inside the test's tmp_path; torch on one
    thread (these tiny networks gain nothing from more, and on shared cores threads wait on each other)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home" / var.lower()))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    import wandb

    wandb.finish()


def finished(logger: WandbLogger) -> None:
    logger.experiment.finish()


def check_search_run(run, out: Path, generations: int) -> None:
    """One history row per generation with its hypervolume, every candidate in the per-generation tables, the
    growing scatter, the front table with one drawing per member and the top-k artifact."""
    history = json.loads((out / "history.json").read_text())
    rows = run.rows_with("search/hypervolume")
    assert [r["search/generation"] for r in rows] == list(range(generations + 1))
    assert [r["search/hypervolume"] for r in rows] == pytest.approx([h["hypervolume"] for h in history])
    assert [r["search/front_size"] for r in rows] == [h["front"] for h in history]
    journal = {json.loads(line)["hash"] for line in (out / "candidates.jsonl").read_text().splitlines()}
    logged = []
    for generation, row in enumerate(rows):
        table = json.loads((run.files / row["search/new_candidates/path"]).read_text())
        column = table["columns"].index("generation")
        assert {r[column] for r in table["data"]} <= {generation}
        logged += [r[0] for r in table["data"]]
    assert sorted(logged) == sorted(journal)
    scatter = run.config["_wandb/visualize/search/pareto"]["panel_config"]
    assert scatter["panelDefId"] == "wandb/scatter/v0"
    assert scatter["fieldSettings"] == {"x": "latency_ms", "y": "miou"}
    sizes = [json.loads((run.files / r["search/pareto_table/path"]).read_text()) for r in rows]
    assert [len(t["data"]) for t in sizes] == [h["feasible"] for h in history]  # grows with the search
    front = json.loads((out / "pareto.json").read_text())
    table = run.table("search/front")
    assert sorted(r[0] for r in table["data"]) == sorted(e["hash"] for e in front)
    drawings = [c for c in run.artifact("run_table", "searchfront").manifest.contents if c.path.endswith(".png")]
    assert len(drawings) == len(front)
    for entry in drawings:
        with Image.open(entry.local_path) as image:
            assert image.width > 200 and image.height > 100
    topk = run.artifact("architectures")
    assert {c.path for c in topk.manifest.contents} == {f"topk/{p.name}" for p in (out / "topk").glob("*.json")} | {
        "pareto.json", "best.json"}
    assert len(run.table("search/candidates")["data"]) == len(journal)


def test_a_search_logs_every_generation_live(tmp_path):
    out = tmp_path / "search"
    logger = WandbLogger(project="hyctas-test", save_dir=str(out))
    seen = []
    config = SearchConfig(population=6, generations=3, seed=3, latency_backend="cpu", reference=[0.0, 80.0], top_k=3)

    def measure(arch):  # what the run holds while the search runs: the generations finished so far
        seen.append(logger.experiment.summary.get("search/generation"))
        return toy_measure(arch)

    search_with(measure, SPACE, config, Journal(out / "candidates.jsonl"), out, logger=logger, show_progress=False)
    finished(logger)
    assert list(dict.fromkeys(seen)) == [None, 0, 1, 2]  # generation g is on the dashboard while g + 1 runs
    check_search_run(read_offline_run(out), out, generations=3)


@pytest.mark.slow
def test_supernet_training_and_its_search_callback_log_to_one_run(tmp_path, monkeypatch):
    data = SyntheticStreetDataModule(train_samples=32, val_samples=8, size=(64, 128), batch_size=16)
    module = SupernetModule(SearchSpace(layers=4, fch=4), num_classes=8, val_random=2)
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.05)
    logger = WandbLogger(project="hyctas-test", save_dir=str(tmp_path))
    callback = SearchCallback(fast_config(calibration_images=16, val_images=8, generations=2),
                              out_dir=str(tmp_path / "search"))
    L.Trainer(max_epochs=2, default_root_dir=tmp_path, logger=logger, enable_progress_bar=False,
              num_sanity_val_steps=0, enable_model_summary=False, log_every_n_steps=1,
              callbacks=[callback, L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)]
              ).fit(module, data)
    finished(logger)
    run = read_offline_run(tmp_path)
    for name in ("largest", "smallest", "random0", "random1"):  # every tracked sub-network, each validation
        values = [r[f"val/mIoU_{name}"] for r in run.rows_with(f"val/mIoU_{name}")]
        assert len(values) == 2 and all(0 <= v <= 1 for v in values)
    check_search_run(run, tmp_path / "search", generations=2)

    # `hyctas search --wandb` logs offline by default, into the run folder
    monkeypatch.delenv("WANDB_MODE")
    out = tmp_path / "cli"
    assert main(["search", "--ckpt", str(tmp_path / "last.ckpt"), "--out", str(out), "--wandb", "true",
                 "--search.population", "4", "--search.generations", "1", "--search.calibration_images", "16",
                 "--search.val_images", "8", "--search.latency_backend", "cpu", "--search.latency_size", "[64, 128]",
                 "--search.latency_warmup", "1", "--search.latency_runs", "2", "--search.top_k", "2"]) == 0
    import wandb

    wandb.finish()
    check_search_run(read_offline_run(out), out, generations=1)


def test_retraining_logs_the_per_class_iou_table_and_mask_images(tmp_path):
    L.seed_everything(0)
    data = SyntheticStreetDataModule(train_samples=8, val_samples=6, size=(64, 128), batch_size=4)
    module = SegmentationModule("hyctas_s", num_classes=8, fch=4, warmup_iters=1, aux_weight=0.0)
    logger = WandbLogger(project="hyctas-test", save_dir=str(tmp_path))
    L.Trainer(max_steps=2, default_root_dir=tmp_path, logger=logger, enable_progress_bar=False,
              enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=1,
              log_every_n_steps=1).fit(module, data)
    finished(logger)
    run = read_offline_run(tmp_path)
    assert len(run.rows_with("val/IoU_table/path")) == 1, [sorted(h) for h in run.history]  # not in the sanity check
    table = run.table("val/IoU_table")
    assert table["columns"] == ["class", "IoU"]
    assert [r[0] for r in table["data"]] == list(SYNTHETIC_CLASSES)
    assert all(v is None or 0 <= v <= 1 for _, v in table["data"])
    logged_miou = run.rows_with("val/mIoU")[-1]["val/mIoU"]
    assert sum(v for _, v in table["data"] if v is not None) / sum(v is not None for _, v in table["data"]) \
        == pytest.approx(logged_miou, abs=1e-5)
    images = run.media("val/predictions")
    assert images["_type"] == "images/separated" and images["count"] == module.media.count
    masks = sorted((run.files / "media" / "images" / "mask").rglob("*.png"))
    assert len(masks) == 2 * module.media.count  # prediction and ground truth of each image
    with Image.open(masks[0]) as mask:
        assert mask.size == (128, 64)
