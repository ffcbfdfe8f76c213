"""Bad input and faults as a new user meets them: every command answers a mistake with one line and an exit status
per kind (``cli.errors.EXIT_CODES``), opening a checkpoint never runs code from it, search results are never stale,
training stops at a NaN, predictions keep each input's size, and a killed run resumes as if uninterrupted."""
from __future__ import annotations

import errno
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel
from PIL import Image

import fixtures_data as fx
from hyctas_lightning.checkpoints import atomic_save
from hyctas_lightning.cli import errors as E
from hyctas_lightning.cli import main
from hyctas_lightning.cli.lightning import HyctasCLI
from hyctas_lightning.data.transforms import SegmentationTransform, TransformConfig, eval_size
from hyctas_lightning.errors import TrainingDiverged
from hyctas_lightning.fileio import json_digest
from hyctas_lightning.locks import FileLock, LockHeld
from hyctas_lightning.models import load_network, load_supernet
from hyctas_lightning.search import Journal, Measurement, NothingFeasible, SearchConfig, runner, search_with
from hyctas_lightning.search.journal import Candidate
from hyctas_lightning.search.runner import SEARCH_LOCK
from hyctas_lightning.search_space import SearchSpace
from hyctas_lightning.training import AtomicCheckpointIO, DivergenceGuard, LastCheckpoint, SegmentationModule

ROOT = Path(__file__).resolve().parents[1]
TINY_DATA = ["--data.init_args.train_samples=8", "--data.init_args.val_samples=4", "--data.init_args.test_samples=4",
             "--data.init_args.size=[64,128]", "--data.init_args.batch_size=4", "--trainer.enable_progress_bar=false",
             "--trainer.enable_model_summary=false"]
RETRAIN = ["--config", str(ROOT / "configs/demo/retrain.yaml"), *TINY_DATA]
SUPERNET = ["--config", str(ROOT / "configs/demo/supernet.yaml"), *TINY_DATA, "--model.init_args.space.layers=4",
            "--model.init_args.val_random=1"]
SEARCH_YAML = ("search:\n  population: 4\n  generations: 1\n  calibration_images: 8\n  val_images: 4\n"
               "  latency_backend: cpu\n  latency_size: [64, 128]\n  latency_warmup: 1\n  latency_runs: 1\n"
               "  top_k: 2\n")


def fails(capsys, args, code: int, text: str) -> str:
    """Run ``hyctas ARGS``: it must exit with ``code`` and say ``text`` in exactly one error line, no traceback."""
    assert main([str(a) for a in args]) == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"hyctas {args[0]}") and ": error: " in line]
    assert len(lines) == 1, err
    assert text in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny retrain run and one tiny supernet run of ``hyctas fit``, and a search config."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["fit", *RETRAIN, "--trainer.max_epochs=1", f"--trainer.default_root_dir={root / 'retrain'}"]) == 0
    assert main(["fit", *SUPERNET, "--trainer.max_epochs=1", f"--trainer.default_root_dir={root / 'supernet'}"]) == 0
    (root / "search.yaml").write_text(SEARCH_YAML)
    return {"retrain": root / "retrain/checkpoints/last.ckpt", "supernet": root / "supernet/checkpoints/last.ckpt",
            "search": root / "search.yaml"}


def edited(source: Path, target: Path, edit) -> Path:
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, target)
    return target


class Payload:
    """Pickles as a call that leaves a marker file: loading it with ``weights_only=False`` would run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ------------------------------------------------------------------------------------------ checkpoints
def test_a_checkpoint_carrying_code_runs_it_in_no_command(runs, tmp_path, capsys):
    marker = tmp_path / "pwned"
    bad = {name: edited(runs[name], tmp_path / f"{name}_payload.ckpt",
                        lambda c: c["hyctas"].__setitem__("note", Payload(marker))) for name in ("retrain", "supernet")}
    commands = [["search", "--ckpt", bad["supernet"], "--config", runs["search"], "--out", tmp_path / "s"],
                ["bench", "--ckpt", bad["retrain"], "--size", "32", "64", "--variants", "fp32"],
                ["export", "--ckpt", bad["retrain"], "--out", tmp_path / "net.onnx"],
                ["fit", *SUPERNET, "--ckpt_path", bad["supernet"], f"--trainer.default_root_dir={tmp_path / 'f'}"],
                *[[cmd, *RETRAIN, "--ckpt_path", bad["retrain"]] for cmd in ("fit", "validate", "test", "predict")]]
    for args in commands:
        fails(capsys, args, E.EXIT_CHECKPOINT, "refused to open: it holds Python objects beyond tensors")
    (tmp_path / "l" / "checkpoints").mkdir(parents=True)  # found by --ckpt_path last: checked as a named file is
    shutil.copy(bad["supernet"], tmp_path / "l" / "checkpoints" / "last.ckpt")
    fails(capsys, ["fit", *SUPERNET, "--ckpt_path", "last", f"--trainer.default_root_dir={tmp_path / 'l'}"],
          E.EXIT_CHECKPOINT, "refused to open: it holds Python objects beyond tensors")
    for load in (lambda: load_network(bad["retrain"]), lambda: load_supernet(bad["supernet"]),
                 lambda: SegmentationModule.load_from_checkpoint(bad["retrain"]),
                 lambda: AtomicCheckpointIO().load_checkpoint(bad["retrain"])):  # how the Trainer loads --ckpt_path
        with pytest.raises(Exception, match="(refused to open|Weights only load failed)"):
            load()
    assert not marker.exists()


def test_the_cli_overrides_only_public_lightning_cli_hooks():
    """A private method of LightningCLI can change in any Lightning release; HyctasCLI overrides none."""
    from lightning.pytorch.cli import LightningCLI

    private = [name for name in vars(HyctasCLI) if name.startswith("_") and not name.startswith("__")]
    assert not [name for name in private if hasattr(LightningCLI, name)]


def test_options_typed_with_a_checkpoint_are_used_or_refused_by_name(runs, tmp_path, capsys, caplog):
    run = tmp_path / "run"
    line = fails(capsys, ["fit", *RETRAIN, "--model.init_args.arch", "hyctas_m", "--model.init_args.lr", "0.5",
                          "--ckpt_path", runs["retrain"], f"--trainer.default_root_dir={run}"], E.EXIT_USAGE,
                 "stores other values for options given on the command line")
    assert "--model.init_args.arch 'hyctas_m'" in line and "--model.init_args.lr 0.5 (checkpoint: 0.05)" in line
    assert "resuming continues the checkpoint's run" in line and not run.exists()  # nothing trained
    fails(capsys, ["test", *RETRAIN, "--model.init_args.fch=8", "--ckpt_path", runs["retrain"]], E.EXIT_USAGE,
          "--model.init_args.fch 8 (checkpoint: 4); a checkpoint is evaluated with the network and settings")
    fails(capsys, ["fit", *SUPERNET, "--optimizer.init_args.lr=0.5", "--model.init_args.val_random=2", "--ckpt_path",
                   runs["supernet"], f"--trainer.default_root_dir={run}"], E.EXIT_USAGE,
          "--optimizer.init_args.lr 0.5 (checkpoint: 0.05)")  # the restored optimiser would have overridden it
    # typed values the checkpoint holds as well pass; test-time options it does not store are used
    with caplog.at_level(logging.INFO):
        assert main(["test", *RETRAIN, "--model.init_args.arch", "hyctas_s", "--model.init_args.lr", "0.05",
                     "--model.init_args.test_flip", "true", "--ckpt_path", str(runs["retrain"]),
                     f"--trainer.default_root_dir={run}"]) == 0
    assert any("per-class IoU (%), scales [1.0] + flip" in r.getMessage() for r in caplog.records)


def test_resuming_with_nothing_to_resume_says_where_it_looked(tmp_path, capsys):
    run = tmp_path / "new"
    fails(capsys, ["fit", *RETRAIN, "--ckpt_path", "last", f"--trainer.default_root_dir={run}"], E.EXIT_CHECKPOINT,
          f"--ckpt_path last: nothing to resume: no last.ckpt in {run / 'checkpoints'}; set "
          f"--trainer.default_root_dir to the run to resume, or leave out --ckpt_path to train from scratch")
    assert not list(tmp_path.rglob("*.ckpt"))  # nothing was trained from scratch
    fails(capsys, ["fit", *RETRAIN, "--ckpt_path", tmp_path / "nowhere.ckpt"], E.EXIT_CHECKPOINT,
          f"checkpoint not found: {tmp_path / 'nowhere.ckpt'}")


def test_a_full_disk_during_fit_names_the_file_being_written(tmp_path, capsys, monkeypatch):
    def full_disk(obj, f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    run = tmp_path / "run"
    fails(capsys, ["fit", *RETRAIN, "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
                   "--trainer.limit_val_batches=1", f"--trainer.default_root_dir={run}"], E.EXIT_FILES,
          f"No space left on device (a previous file there is unchanged): '{run / 'checkpoints'}")
    assert not [p for p in run.rglob("*") if p.suffix in (".ckpt", ".tmp")]  # nothing half-written is left


def test_corrupt_and_missing_checkpoints(runs, tmp_path, capsys):
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(runs["retrain"].read_bytes()[:5000])
    fails(capsys, ["test", *RETRAIN, "--ckpt_path", cut], E.EXIT_CHECKPOINT, "not a readable PyTorch checkpoint")
    fails(capsys, ["export", "--ckpt", cut, "--out", tmp_path / "x.onnx"], E.EXIT_CHECKPOINT,
          "probably cut short or corrupt")
    fails(capsys, ["bench", "--ckpt", tmp_path / "nowhere.ckpt"], E.EXIT_CHECKPOINT, "checkpoint not found")


def test_every_command_checks_the_checkpoint_kind_before_lightning_loads_it(runs, tmp_path, capsys):
    run = tmp_path / "supernet_run"
    fails(capsys, ["fit", *SUPERNET, "--ckpt_path", runs["retrain"], f"--trainer.default_root_dir={run}"],
          E.EXIT_CHECKPOINT, "is a retrained network's checkpoint, not a supernet checkpoint")
    assert not list(run.rglob("*.ckpt"))  # nothing was trained into the supernet's folder
    fails(capsys, ["test", *RETRAIN, "--ckpt_path", runs["supernet"]], E.EXIT_CHECKPOINT,
          "is a supernet checkpoint, not a retrained network's checkpoint; search a supernet")
    fails(capsys, ["bench", "--ckpt", runs["supernet"]], E.EXIT_CHECKPOINT, "is a supernet checkpoint")
    fails(capsys, ["search", "--ckpt", runs["retrain"]], E.EXIT_CHECKPOINT, "not a supernet checkpoint")


def test_plugins_a_checkpoint_lists_are_imported_only_when_the_user_names_them(runs, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_plugin.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def lists_plugin(checkpoint):
        checkpoint["hyper_parameters"]["plugins"] = ["evil_plugin"]
        checkpoint["hyctas"]["network"]["plugins"] = ["evil_plugin"]

    def space_lists_plugin(checkpoint):
        checkpoint["hyper_parameters"]["space"]["plugins"] = ["evil_plugin"]
        checkpoint["hyctas"]["space"]["plugins"] = ["evil_plugin"]

    retrain = edited(runs["retrain"], tmp_path / "retrain.ckpt", lists_plugin)
    supernet = edited(runs["supernet"], tmp_path / "supernet.ckpt", space_lists_plugin)
    for args in (["test", *RETRAIN, "--ckpt_path", retrain], ["bench", "--ckpt", retrain],
                 ["export", "--ckpt", retrain, "--out", tmp_path / "x.onnx"], ["search", "--ckpt", supernet],
                 ["fit", *SUPERNET, "--ckpt_path", supernet, f"--trainer.default_root_dir={tmp_path / 'f'}"]):
        fails(capsys, args, E.EXIT_CHECKPOINT, "lists plugin modules ['evil_plugin']")
    assert not marker.exists()
    # named by the user, the same plugin is imported and the network loads
    assert main(["bench", "--ckpt", str(retrain), "--plugins", "evil_plugin", "--size", "32", "64",
                 "--variants", "fp32", "--warmup", "1", "--runs", "1"]) == 0
    assert marker.exists()


def test_class_counts_are_checked_against_the_data(runs, tmp_path, capsys):
    fx.camvid(tmp_path / "camvid")  # 11 classes; the checkpoints were trained on the 8 synthetic ones
    camvid = ["--config", str(ROOT / "configs/data/camvid.yaml"), f"--data.init_args.root={tmp_path / 'camvid'}"]
    fails(capsys, ["test", "--config", str(ROOT / "configs/demo/retrain.yaml"), *camvid, "--ckpt_path",
                   runs["retrain"]], E.EXIT_CLASSES,
          "was trained for 8 classes, but the data (CamVidDataModule) has 11")
    data = f'{{"class_path": "camvid", "init_args": {{"root": "{tmp_path / "camvid"}"}}}}'
    fails(capsys, ["search", "--ckpt", runs["supernet"], "--data", data], E.EXIT_CLASSES,
          "was trained for 8 classes, but the data (CamVidDataModule) has 11")


# ------------------------------------------------------------------------------------------ user errors
def test_common_mistakes_are_one_line_with_their_own_status(runs, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    bad_arch = tmp_path / "arch.json"
    bad_arch.write_text('{"branches": [{"ops": ["conv"], "widths": [1], "downs": [0]}]}')
    search = ["search", "--ckpt", runs["supernet"], "--config", runs["search"], "--out", tmp_path / "s"]
    fails(capsys, [*search, "--search.objectives", "[miou, beauty]"], E.EXIT_USAGE, "objectives: unknown ['beauty']")
    fails(capsys, [*search, "--search.latency_cap_ms", "0"], E.EXIT_USAGE, "latency_cap_ms: must be > 0 ms")
    fails(capsys, [*search, "--search.min_miou", "2.0"], E.EXIT_USAGE, "min_miou: an mIoU in [0, 1]")
    assert not (tmp_path / "s" / "candidates.jsonl").exists()  # refused before evaluating anything
    fails(capsys, ["search", "--ckpt", runs["supernet"], "--config", runs["search"], "--out", a_file / "out"],
          E.EXIT_FILES, "Not a directory")
    fails(capsys, ["fit", *RETRAIN, f"--trainer.default_root_dir={a_file / 'run'}", "--trainer.max_epochs=1"],
          E.EXIT_FILES, "a part of the output path is a file")
    fails(capsys, ["fit", "--config", str(ROOT / "configs/demo/retrain.yaml"), "--config",
                   str(ROOT / "configs/data/camvid.yaml"), f"--data.init_args.root={tmp_path / 'nowhere'}"],
          E.EXIT_DATASET, "dataset root not found")
    fails(capsys, ["fit", *RETRAIN, f"--model.init_args.arch={bad_arch}"], E.EXIT_ARCHITECTURE,
          "branches[0].nodes: missing")
    fails(capsys, ["fit", *RETRAIN, "--model.init_args.network=lraspp_mobilenet_v3_large"], E.EXIT_USAGE,
          "give exactly one of `arch`")
    fails(capsys, ["profile", "--arch", bad_arch], E.EXIT_ARCHITECTURE, "branches[0].nodes: missing")


def test_a_broken_image_read_in_a_loader_worker_is_still_one_line(tmp_path, capsys):
    fx.camvid(tmp_path)
    image = tmp_path / "train/0001TP_006690.png"
    image.write_bytes(image.read_bytes()[:40])
    fails(capsys, ["fit", "--config", str(ROOT / "configs/demo/retrain.yaml"), "--config",
                   str(ROOT / "configs/data/camvid.yaml"), f"--data.init_args.root={tmp_path}",
                   "--data.init_args.num_workers=1", "--data.init_args.batch_size=2", "--trainer.max_epochs=1",
                   "--trainer.num_sanity_val_steps=0", f"--trainer.default_root_dir={tmp_path / 'run'}",
                   "--trainer.enable_progress_bar=false"],
          E.EXIT_DATASET, f"hyctas fit: error: cannot read {image}: cannot identify image file")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_asking_for_a_gpu_that_is_not_there(runs, capsys):
    fails(capsys, ["fit", *RETRAIN, "--trainer.accelerator=gpu"], E.EXIT_DEVICE, "no usable CUDA GPU")
    fails(capsys, ["bench", "--arch", "hyctas_s", "--device", "cuda"], E.EXIT_DEVICE, "no usable CUDA GPU")
    fails(capsys, ["search", "--ckpt", runs["supernet"], "--device", "cuda"], E.EXIT_DEVICE, "no usable CUDA GPU")


def test_a_wrong_type_or_class_path_is_one_line_naming_key_value_and_type(runs, tmp_path, capsys):
    config = tmp_path / "fast.yaml"
    config.write_text("model:\n  init_args:\n    lr: fast\n")
    fails(capsys, ["fit", *RETRAIN, "--config", config], E.EXIT_USAGE, "model.init_args.lr: expected float, got 'fast'")
    fails(capsys, ["fit", *RETRAIN, "--model.init_args.lr", "fast"], E.EXIT_USAGE,
          "model.init_args.lr: expected float, got 'fast'")
    fails(capsys, ["fit", *SUPERNET, "--model.init_args.space.layers", "many"], E.EXIT_USAGE,
          "model.init_args.space.layers: expected int, got 'many'")
    fails(capsys, ["fit", *RETRAIN, "--trainer.max_epochs", "many"], E.EXIT_USAGE,
          "trainer.max_epochs: expected int or null, got 'many'")
    fails(capsys, ["fit", *RETRAIN, "--model.init_args.lrr", "0.1"], E.EXIT_USAGE,
          "model.init_args.lrr: not an argument of SegmentationModule; closest: lr")
    config.write_text("model:\n  class_path: hyctas_lightning.training.SegmentatonModule\n")
    fails(capsys, ["fit", *RETRAIN, "--config", config], E.EXIT_USAGE,
          "model: class_path 'hyctas_lightning.training.SegmentatonModule' does not name an importable class; "
          "closest importable class: hyctas_lightning.training.SegmentationModule")
    fails(capsys, ["fit", *RETRAIN, "--data.class_path", "SyntheticStreetDataModul"], E.EXIT_USAGE,
          "closest importable class: SyntheticStreetDataModule")
    fails(capsys, ["search", "--ckpt", runs["supernet"], "--search.population", "many"], E.EXIT_USAGE,
          "search.population: expected int, got 'many'")


def test_typos_stay_usage_errors_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *RETRAIN, "--trainer.max_epochz=1"])
    assert exit_.value.code == 2
    capsys.readouterr()
    bad = tmp_path / "arch.json"
    bad.write_text("{")
    assert main(["profile", "--arch", str(bad), "--debug"]) == E.EXIT_ARCHITECTURE
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("hyctas profile: error:")
    monkeypatch.setenv("HYCTAS_DEBUG", "1")
    assert main(["profile", "--arch", str(bad)]) == E.EXIT_ARCHITECTURE
    assert "Traceback" in capsys.readouterr().err


def test_unexpected_errors_keep_their_traceback():
    assert E.classify(RuntimeError("a bug")) is None
    with pytest.raises(RuntimeError, match="a bug"):
        E.report(RuntimeError("a bug"), "hyctas x", debug=False)
    wrapped = ValueError("Does not validate against any of the Union subtypes\n...")
    wrapped.__cause__ = TrainingDiverged("the real story")
    assert E.classify(wrapped)[:1] == (E.EXIT_DIVERGED,) and E.message(E.classify(wrapped)[1], True) == "the real story"


# ------------------------------------------------------------------------------------------ training
def test_nan_training_stops_non_zero_and_saves_no_nan(tmp_path, capsys):
    run = tmp_path / "nan"
    line = fails(capsys, ["fit", *RETRAIN, "--trainer.max_epochs=4", "--model.init_args.lr=1e6",
                          "--model.init_args.warmup_iters=0", "--trainer.gradient_clip_val=null",
                          f"--trainer.default_root_dir={run}"], E.EXIT_DIVERGED, "training diverged: the loss is nan")
    assert " at step " in line
    for path in run.rglob("*.ckpt"):
        state = torch.load(path, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), path


def test_nan_in_the_supernet_names_the_sub_network(tmp_path, capsys):
    fails(capsys, ["fit", *SUPERNET, "--trainer.max_epochs=2", "--optimizer.init_args.lr=1e12",
                   f"--trainer.default_root_dir={tmp_path}"], E.EXIT_DIVERGED,
          "at step 1 (epoch 0), sub-network 'largest'")


def test_nan_under_a_fused_optimiser_is_read_a_step_late_and_the_device_skips_its_update(tmp_path, capsys):
    # a fused SGD skips its own step where the loss was not finite, so the guard reads the verdict a step later
    # instead of waiting for the GPU at every step; the message still names the step and the sub-network
    line = fails(capsys, ["fit", *SUPERNET, "--trainer.max_epochs=2", "--optimizer.init_args.lr=1e12",
                          "--optimizer.init_args.fused=true", f"--trainer.default_root_dir={tmp_path}"],
                 E.EXIT_DIVERGED, "at step 1 (epoch 0), sub-network 'largest' (3 branch(es)")
    assert "the optimiser skipped that step on the device, so no NaN reached the weights" in line
    for path in tmp_path.rglob("*.ckpt"):
        state = torch.load(path, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), path


def test_a_deferred_verdict_skips_the_update_on_the_device_and_raises_at_the_next_step():
    guard, model = DivergenceGuard(), BoringModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
        optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = SimpleNamespace(global_step=3, current_epoch=0, world_size=1, precision_plugin=None)
    guard.on_before_backward(trainer, model, torch.tensor(float("nan")))
    guard.on_before_optimizer_step(trainer, model, optimizer)  # no verdict read yet: the device skips the step
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    trainer.global_step = 4
    guard.on_before_backward(trainer, model, torch.tensor(1.0))
    with pytest.raises(TrainingDiverged, match=r"the loss is nan at step 3 .*the optimiser skipped that step"):
        guard.on_before_optimizer_step(trainer, model, optimizer)
    guard.on_before_backward(trainer, model, torch.tensor(1.0))  # a finite step after: the device applies it
    guard.on_before_optimizer_step(trainer, model, optimizer)
    optimizer.step()
    assert not any(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_guard_refuses_to_write_non_finite_weights(tmp_path):
    model = BoringModel()
    with torch.no_grad():
        model.layer.weight[0, 0] = float("inf")
    with pytest.raises(TrainingDiverged, match=r"at step 7 \(first: layer.weight\); the checkpoint was not written"):
        DivergenceGuard().on_save_checkpoint(SimpleNamespace(global_step=7), model, {"state_dict": model.state_dict()})


def test_last_ckpt_is_the_latest_state_every_epoch(tmp_path):
    seen = []

    class Watch(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            path = tmp_path / "last.ckpt"
            seen.append(torch.load(path, weights_only=True)["epoch"] if path.exists() else None)

    trainer = L.Trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[LastCheckpoint(dirpath=str(tmp_path)), Watch()])
    trainer.fit(BoringModel())
    assert seen == [None, 0, 1]
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_an_interrupted_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = atomic_save({"v": torch.ones(3)}, tmp_path / "last.ckpt")

    def dying_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"v": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["v"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


# ------------------------------------------------------------------------------------------ predictions
@pytest.mark.parametrize("transforms", ['{"pad_to_multiple": 32}', '{"pad_to_multiple": 32, "base_size": 48}'])
def test_predictions_have_each_inputs_own_size(runs, tmp_path, transforms):
    out = tmp_path / "predictions"
    assert main(["predict", *RETRAIN, "--data.init_args.size=[72,100]", f"--data.init_args.transforms={transforms}",
                 "--ckpt_path", str(runs["retrain"]), f"--trainer.default_root_dir={tmp_path}"]) == 0
    written = sorted(out.glob("*.png"))
    assert len(written) == 8  # 4 test images, mask and overlay each
    assert {Image.open(p).size for p in written} == {(100, 72)}  # (width, height), not the padded 128 x 96


def test_predict_skips_bad_samples_and_writes_what_it_reports(tmp_path, caplog):
    fx.camvid(tmp_path)
    good = ["0016E5_07959", "0016E5_08000"]
    shutil.copy(tmp_path / "val/0016E5_07959.png", tmp_path / "val/0016E5_08000.png")
    shutil.copy(tmp_path / "valannot/0016E5_07959.png", tmp_path / "valannot/0016E5_08000.png")
    (tmp_path / "val/broken.png").write_bytes(b"not a png")
    shutil.copy(tmp_path / "valannot/0016E5_07959.png", tmp_path / "valannot/broken.png")
    (tmp_path / "val.txt").write_text("".join(f"val/{n}.png valannot/{n}.png\n" for n in ["broken", *good]))
    with caplog.at_level(logging.INFO):
        assert main(["predict", "--config", str(ROOT / "configs/demo/retrain.yaml"), "--config",
                     str(ROOT / "configs/data/camvid.yaml"), f"--data.init_args.root={tmp_path}",
                     "--data.init_args.skip_bad_samples=true", "--data.init_args.num_workers=0",
                     f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.enable_progress_bar=false"]) == 0
    written = sorted(p.name for p in (tmp_path / "run/predictions").iterdir())
    assert written == [f"{n}_{kind}.png" for n in good for kind in ("mask", "overlay")]
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"wrote masks and overlays of {len(good)} images" in m for m in messages)
    assert any("left out 1 of 3 samples of the val split" in m and str(tmp_path / "val/broken.png") in m
               for m in messages)


def test_rank_references_missing_empty_or_not_json(runs, tmp_path, capsys):
    rank = ["rank", "--ckpt", runs["supernet"], "--out", tmp_path / "rank", "--random_members", "3",
            "--calibration_images", "4", "--val_images", "2", "--device", "cpu"]
    fails(capsys, [*rank, "--references", tmp_path / "nowhere"], E.EXIT_FILES,
          f"--references {tmp_path / 'nowhere'}: no such folder")
    references = tmp_path / "references"
    references.mkdir()
    (references / "notes.json").write_text("miou: 0.5\n")  # not JSON: the file named, as every unreadable JSON
    fails(capsys, [*rank, "--references", references], E.EXIT_FILES, str(references / "notes.json"))
    (references / "notes.json").write_text("[0.5]\n")  # JSON, but not a result
    fails(capsys, [*rank, "--references", references], E.EXIT_USAGE,
          f"{references / 'notes.json'}: not a reference result")
    (references / "notes.json").unlink()
    assert main([str(a) for a in rank] + ["--references", str(references)]) == 0
    out = capsys.readouterr().out
    assert f"--references {references} holds no standalone results" in out
    assert "no references: Kendall tau and Spearman rho need standalone results" in out
    assert "Kendall tau nan" not in out


def test_eval_size_matches_the_evaluation_pipeline():
    for config in (TransformConfig(pad_to_multiple=32), TransformConfig(base_size=48, pad_to_multiple=16),
                   TransformConfig(base_size=97)):
        transform = SegmentationTransform(config, train=False)
        for h, w in ((72, 100), (360, 480), (33, 129)):
            image, mask = transform(np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8))
            rows, cols = eval_size(config, (h, w))
            m = config.pad_to_multiple or 1
            assert image.shape[1:] == (-(-rows // m) * m, -(-cols // m) * m)


# ------------------------------------------------------------------------------------------ search
def test_a_search_rerun_with_another_supernet_re_evaluates(runs, tmp_path, capsys, monkeypatch):
    def perturbed(checkpoint):
        key = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point() and v.dim() == 4)
        checkpoint["state_dict"][key] = checkpoint["state_dict"][key] + 0.01

    (tmp_path / "other" / "checkpoints").mkdir(parents=True)
    other = edited(runs["supernet"], tmp_path / "other" / "checkpoints" / "last.ckpt", perturbed)
    out = tmp_path / "search"
    search = ["search", "--config", str(runs["search"]), "--out", str(out)]
    assert main([*search, "--ckpt", str(runs["supernet"])]) == 0
    first = (out / "candidates.jsonl").read_text().splitlines()
    capsys.readouterr()
    assert main([*search, "--ckpt", str(other)]) == 0
    assert f"({len(first)} new)" in capsys.readouterr().out  # every candidate measured again, on the new weights
    stale = list((out / "stale").glob("*/candidates.jsonl"))
    assert len(stale) == 1 and stale[0].read_text().splitlines() == first
    assert main([*search, "--ckpt", str(other), "--search.val_images", "2"]) == 0  # other validation images
    assert f"({len(first)} new)" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)  # default folders: one per supernet
    for ckpt in (runs["supernet"], other):
        assert main(["search", "--config", str(runs["search"]), "--ckpt", str(ckpt)]) == 0
    assert len(list((tmp_path / "runs/search").iterdir())) == 2


def test_a_second_search_on_one_folder_is_refused_while_the_first_runs(runs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "search"
    search = ["search", "--ckpt", runs["supernet"], "--config", runs["search"], "--out", out]
    first = FileLock(out / SEARCH_LOCK).acquire()  # a search started 12 s earlier
    first.note("pid 4242 on host since 12:00:00: hyctas search --out search")
    fails(capsys, search, E.EXIT_BUSY, f"{out} is in use: another search writes it (pid 4242 on host since "
          f"12:00:00: hyctas search --out search); wait for it to finish or stop it, or choose another --out")
    assert not (out / "candidates.jsonl").exists()  # refused before it measured or journalled anything
    first.release()
    seen = []

    def while_searching(*args, **kwargs):  # the search holds its folder until it ends
        with pytest.raises(LockHeld, match=f"is held by pid {os.getpid()} on "):
            FileLock(out / SEARCH_LOCK).acquire()
        seen.append(True)
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "search_with", while_searching)
    with pytest.raises(KeyboardInterrupt):
        main([str(a) for a in search])
    assert seen
    FileLock(out / SEARCH_LOCK).acquire().release()  # and it let go when it ended


def test_journals_set_aside_never_replace_each_other(tmp_path):
    space = SearchSpace(layers=4, fch=4)

    def journal(inputs: dict, count: int) -> list:
        written = Journal(tmp_path / "candidates.jsonl", inputs)
        for i in range(count):
            written.append(Candidate(space.sample(random.Random(i)), {"miou": 0.1 * i}, True, 0))
        return [json.loads(line)["hash"] for line in written.path.read_text().splitlines()] if count else []

    a, b = {"supernet": "a"}, {"supernet": "b"}
    first = journal(a, 2)
    second = journal(b, 1)  # the first run's journal goes to stale/A/
    third = journal(a, 3)  # the second's to stale/B/
    journal(b, 0)  # the third's to stale/A.2/: stale/A/ keeps the first run's
    stale = tmp_path / "stale"
    assert sorted(p.name for p in stale.iterdir()) == sorted([json_digest(a), f"{json_digest(a)}.2", json_digest(b)])
    for folder, hashes in ((json_digest(a), first), (f"{json_digest(a)}.2", third), (json_digest(b), second)):
        lines = (stale / folder / "candidates.jsonl").read_text().splitlines()
        assert [json.loads(line)["hash"] for line in lines] == hashes
    assert json.loads((stale / json_digest(a) / "inputs.json").read_text()) == a


def test_a_hopeless_search_says_so_early_with_the_closest_candidates(tmp_path):
    calls = []

    def measure(arch):
        calls.append(arch.hash)
        return Measurement({"miou": 0.5, "latency_ms": 10.0 + len(calls)})

    config = SearchConfig(population=6, generations=3, latency_backend="cpu", latency_cap_ms=5.0)
    with pytest.raises(NothingFeasible) as error:
        search_with(measure, SearchSpace(layers=4, fch=4), config, Journal(tmp_path / "c.jsonl"), tmp_path,
                    show_progress=False)
    assert len(calls) == 6  # one population's worth, not 50 x population
    assert "closest: " in str(error.value) and "latency_ms 11" in str(error.value)
    assert "lowest latency 11 ms" in str(error.value)


# ------------------------------------------------------------------------------------------ kill -9 and resume
def hyctas(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "hyctas_lightning.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_9_of_a_supernet_fit_then_resume_equals_an_uninterrupted_run(tmp_path):
    args = [*SUPERNET, "--data.init_args.train_samples=16", "--data.init_args.batch_size=8", "--trainer.max_epochs=4"]
    full = hyctas("fit", *args, "--trainer.default_root_dir=full", cwd=tmp_path)
    killed = hyctas("fit", *args, "--trainer.default_root_dir=killed", cwd=tmp_path)
    last = tmp_path / "killed/checkpoints/last.ckpt"
    while not last.exists() and killed.poll() is None:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    resumed = hyctas("fit", *args, "--trainer.default_root_dir=killed", "--ckpt_path=last", cwd=tmp_path)
    assert resumed.wait() == 0, resumed.stderr.read()
    assert full.wait() == 0, full.stderr.read()
    a, b = (torch.load(tmp_path / f"{run}/checkpoints/last.ckpt", weights_only=True) for run in ("full", "killed"))
    assert a["epoch"] == b["epoch"] == 3 and a["global_step"] == b["global_step"]
    assert a["lr_schedulers"][0]["_last_lr"] == b["lr_schedulers"][0]["_last_lr"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
