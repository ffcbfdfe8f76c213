"""Several training processes on the CPU (gloo): the supernet under Lightning's DDP as typed, and the collectives
under it."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hyctas_lightning.cli import main
from hyctas_lightning.data import SyntheticStreetDataModule
from hyctas_lightning.distributed import all_agree, any_process
from hyctas_lightning.search.distributed import plan
from hyctas_lightning.search_space import SearchSpace
from hyctas_lightning.search_space.architecture import estimate_training_memory_gb
from hyctas_lightning.training import LastCheckpoint, SupernetModule
from hyctas_lightning.training.curves import read_curves
from hyctas_lightning.training.ddp import all_reduce_gradients

ROOT = Path(__file__).resolve().parents[1]
DATA = dict(train_samples=16, val_samples=7, size=(64, 128), batch_size=4)  # 7: unequal shares of the val split
FIT = ["--config", str(ROOT / "configs/demo/supernet.yaml"), "--model.init_args.space.layers=4",
       "--model.init_args.val_random=1", "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
       "--trainer.enable_model_summary=false", *(f"--data.init_args.{k}={list(v) if isinstance(v, tuple) else v}"
                                                 for k, v in DATA.items())]


SEARCH = json.dumps(dict(objectives=["miou", "macs_g"], population=4, generations=1, calibration_images=8,
                         val_images=7, latency_backend="cpu", latency_size=[64, 128], latency_warmup=1,
                         latency_runs=1, top_k=2))


def front(out: Path) -> list:
    """pareto.json without the measured latency (a timing, which differs from one run to the next)."""
    entries = json.loads((out / "pareto.json").read_text())
    for entry in entries:
        entry["measurements"].pop("latency_ms")
    return entries


def journal(out: Path) -> list:
    return [json.loads(line)["hash"] for line in (out / "candidates.jsonl").read_text().splitlines()]


def hyctas(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "hyctas_lightning.cli", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def records(folder: Path) -> list:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("rank*.json"))]


@pytest.mark.slow
def test_two_process_supernet_fit_as_typed_then_resumed_on_one(tmp_path):
    probe = ["--trainer.callbacks+=ddp_probe.Probe", "--trainer.callbacks.out=probe"]
    search = ["--trainer.callbacks+=hyctas_lightning.search.SearchCallback", f"--trainer.callbacks.config={SEARCH}",
              "--trainer.callbacks.out_dir=search"]
    throughput = ["--trainer.callbacks+=hyctas_lightning.training.TrainingThroughput", "--trainer.log_every_n_steps=1",
                  "--trainer.callbacks.window_size=2"]
    fit = hyctas("fit", *FIT, "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.max_epochs=2",
                 "--trainer.default_root_dir=run", *probe, *throughput, *search, cwd=tmp_path)
    assert "not used in producing the loss" not in fit.stderr and "sync_dist=True" not in fit.stderr
    logged = read_curves(tmp_path / "run", recursive=False)
    assert logged["train/loss_epoch"].steps == (1, 3)  # every epoch, averaged over the processes
    assert logged["train/samples"].last == 4 * 4  # rank 0's count: four batches of four
    assert logged["train/samples_per_sec"].last == pytest.approx(2 * logged["train/device/samples_per_sec"].last)
    first, second = records(tmp_path / "probe")
    assert first["world_size"] == second["world_size"] == 2
    assert first["trained"] == second["trained"] and len(first["trained"]) == 4  # 16 images / 2 / 4 per batch x 2
    assert all(len(archs) == 4 for archs in first["trained"].values())  # the whole sandwich, every step
    assert first["weights"] == second["weights"]  # one averaged gradient: the replicas never drift apart
    assert first["val"] == second["val"] and len(first["val"]) == 2

    # the same weights and calibration images in one process, the whole val split: the numbers logged above
    # (the panel and calibration settings are chosen at evaluation, not stored: those of the fit above)
    module = SupernetModule.load_from_checkpoint(tmp_path / "run/checkpoints/last.ckpt", weights_only=True,
                                                 val_random=1, calibration_images=64)
    module._calibration = torch.load(tmp_path / "probe/calibration.pt")
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    alone = trainer.validate(module, SyntheticStreetDataModule(**DATA), verbose=False)[0]
    assert len(module._calibration) == 4 and alone.keys() == first["val"][-1].keys()
    assert alone == pytest.approx(first["val"][-1], abs=1e-6)

    # the search after the fit, spread over both processes, found what one process finds in the checkpoint
    (tmp_path / "search.yaml").write_text(json.dumps({"search": json.loads(SEARCH)}))
    assert main(["search", "--ckpt", str(tmp_path / "run/checkpoints/last.ckpt"), "--config",
                 str(tmp_path / "search.yaml"), "--device", "cpu", "--out", str(tmp_path / "alone")]) == 0
    assert front(tmp_path / "search") == front(tmp_path / "alone") and len(journal(tmp_path / "search")) >= 8
    assert json.loads((tmp_path / "search/gpu_spread.json").read_text())["processes"] == 2

    # a checkpoint of two processes resumes on one: same step count onwards, same sampler
    hyctas("fit", *FIT, "--trainer.devices=1", "--trainer.max_epochs=3", "--trainer.default_root_dir=run",
           "--ckpt_path=last", "--trainer.callbacks+=ddp_probe.Probe", "--trainer.callbacks.out=resumed", cwd=tmp_path)
    (resumed,) = records(tmp_path / "resumed")
    assert sorted(map(int, resumed["trained"])) == list(range(4, 8))  # one process: 16 / 4 = 4 steps per epoch
    assert resumed["trained"]["4"] == [a.hash for _, a in module.sampler.sample(4)]
    assert torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)["global_step"] == 8


@pytest.fixture(scope="module")
def supernet_checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("supernet")
    L.seed_everything(0)
    module = SupernetModule(SearchSpace(layers=4, fch=4), num_classes=8, val_random=1)
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    L.Trainer(max_epochs=2, default_root_dir=root, logger=False, enable_progress_bar=False, num_sanity_val_steps=0,
              enable_model_summary=False, callbacks=[LastCheckpoint()]).fit(module, SyntheticStreetDataModule(**DATA))
    return root / "checkpoints/last.ckpt"


@pytest.mark.slow
def test_search_over_two_processes_killed_and_rerun_gives_the_one_process_front(supernet_checkpoint, tmp_path):
    search = {**json.loads(SEARCH), "population": 6, "generations": 2}
    (tmp_path / "search.yaml").write_text(json.dumps({"search": search}))
    # the spread search counts each process's profiles ahead in a worker process and builds each candidate's timed
    # child while the process scores the one before: the same numbers
    (tmp_path / "pooled.yaml").write_text(json.dumps({"search": {**search, "profile_workers": 1, "build_ahead": True}}))
    args = ["search", "--ckpt", str(supernet_checkpoint), "--device", "cpu"]
    assert main([*args, "--config", str(tmp_path / "search.yaml"), "--out", str(tmp_path / "alone")]) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    spread = [sys.executable, "-m", "hyctas_lightning.cli", *args, "--config", str(tmp_path / "pooled.yaml"),
              "--devices", "2", "--out", "spread"]
    killed = subprocess.Popen(spread, cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    rows = tmp_path / "spread/candidates.jsonl"
    while killed.poll() is None and not (rows.exists() and len(rows.read_text().splitlines()) >= 5):
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)  # both processes, in the middle of a batch
    assert killed.wait() == -signal.SIGKILL, "the search ended before it could be killed"
    before = journal(tmp_path / "spread")
    rerun = subprocess.run(spread, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = journal(tmp_path / "spread")
    assert after[: len(before)] == before and len(set(after)) == len(after)  # kept, and nothing measured twice
    assert sorted(after) == sorted(journal(tmp_path / "alone"))
    assert front(tmp_path / "spread") == front(tmp_path / "alone")


def test_candidates_are_dealt_largest_first_to_the_least_loaded_process():
    space = SearchSpace(layers=6, fch=4)
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(12)]
    owner = plan(archs, 3)
    assert owner == plan(archs, 3) and sorted(set(owner)) == [0, 1, 2]  # the same plan on every process
    load = [sum(estimate_training_memory_gb(a) for a, o in zip(archs, owner) if o == p) for p in range(3)]
    assert max(load) - min(load) <= max(map(estimate_training_memory_gb, archs))
    assert plan(archs[:2], 4) == [0, 1] or plan(archs[:2], 4) == [1, 0]


# ------------------------------------------------------------------------------------------ collectives
def _collectives(rank: int, init: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        assert all_agree("same text")
        assert not all_agree(f"rank {rank}")  # both learn that they differ
        assert any_process(rank == 1) and not any_process(False)
        used, unused = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
        used.grad = torch.full((3,), float(rank + 1))
        assert all_reduce_gradients([used, unused]) == 3
        assert torch.equal(used.grad, torch.full((3,), 1.5)) and unused.grad is None
    finally:
        dist.destroy_process_group()


def test_agreement_and_one_gradient_average_over_two_processes(tmp_path):
    mp.start_processes(_collectives, args=(f"file://{tmp_path / 'rendezvous'}",), nprocs=2, start_method="fork")
