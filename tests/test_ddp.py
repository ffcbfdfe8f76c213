"""Several training processes on the CPU (gloo): the supernet under Lightning's DDP as typed, and the collectives
under it."""
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hyctas_lightning.data import SyntheticStreetDataModule
from hyctas_lightning.distributed import all_agree, any_process
from hyctas_lightning.training import SupernetModule
from hyctas_lightning.training.ddp import all_reduce_gradients

ROOT = Path(__file__).resolve().parents[1]
DATA = dict(train_samples=16, val_samples=7, size=(64, 128), batch_size=4)  # 7: unequal shares of the val split
FIT = ["--config", str(ROOT / "configs/demo/supernet.yaml"), "--model.init_args.space.layers=4",
       "--model.init_args.val_random=1", "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
       "--trainer.enable_model_summary=false", *(f"--data.init_args.{k}={list(v) if isinstance(v, tuple) else v}"
                                                 for k, v in DATA.items())]


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
    fit = hyctas("fit", *FIT, "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.max_epochs=2",
                 "--trainer.default_root_dir=run", *probe, cwd=tmp_path)
    assert "not used in producing the loss" not in fit.stderr and "sync_dist=True" not in fit.stderr
    first, second = records(tmp_path / "probe")
    assert first["world_size"] == second["world_size"] == 2
    assert first["trained"] == second["trained"] and len(first["trained"]) == 4  # 16 images / 2 / 4 per batch x 2
    assert all(len(archs) == 4 for archs in first["trained"].values())  # the whole sandwich, every step
    assert first["weights"] == second["weights"]  # one averaged gradient: the replicas never drift apart
    assert first["val"] == second["val"] and len(first["val"]) == 2

    # the same weights and calibration images in one process, the whole val split: the numbers logged above
    module = SupernetModule.load_from_checkpoint(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    module._calibration = torch.load(tmp_path / "probe/calibration.pt")
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    alone = trainer.validate(module, SyntheticStreetDataModule(**DATA), verbose=False)[0]
    assert len(module._calibration) == 4 and alone.keys() == first["val"][-1].keys()
    assert alone == pytest.approx(first["val"][-1], abs=1e-6)

    # a checkpoint of two processes resumes on one: same step count onwards, same sampler
    hyctas("fit", *FIT, "--trainer.devices=1", "--trainer.max_epochs=3", "--trainer.default_root_dir=run",
           "--ckpt_path=last", "--trainer.callbacks+=ddp_probe.Probe", "--trainer.callbacks.out=resumed", cwd=tmp_path)
    (resumed,) = records(tmp_path / "resumed")
    assert sorted(map(int, resumed["trained"])) == list(range(4, 8))  # one process: 16 / 4 = 4 steps per epoch
    assert resumed["trained"]["4"] == [a.hash for _, a in module.sampler.sample(4)]
    assert torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)["global_step"] == 8


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
