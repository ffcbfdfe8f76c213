"""TrainingEfficiency: where a training run's time goes, phase by phase, adding up to the wall clock; images and
sub-network passes per second; GPU utilisation sampled in a thread (not available without a GPU)."""
from __future__ import annotations

import json
import time

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from helpers import Recorder
from hyctas_lightning.training import GpuBusy, LastCheckpoint, TrainingEfficiency
from hyctas_lightning.training.efficiency import PHASES

DATA_S, STEP_S, OPTIMIZER_S, VAL_S, WRITE_S = 0.03, 0.02, 0.01, 0.02, 0.05


class SlowData(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        time.sleep(DATA_S / 2)  # batches of 2
        return {"image": torch.randn(3, 4, 4), "mask": torch.zeros(4, 4, dtype=torch.long)}


class SlowSGD(torch.optim.SGD):
    def step(self, closure=None):
        loss = closure() if closure is not None else None  # forward and backward, then the step itself
        time.sleep(OPTIMIZER_S)
        super().step()
        return loss


class Sampler:
    """1, 2, 3, 1, ... sub-networks per step, as a supernet's sampler yields them."""

    def sample(self, step):
        return [("net", None)] * (step % 3 + 1)


class Net(L.LightningModule):
    def __init__(self, sampler=None):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)
        if sampler is not None:
            self.sampler = sampler

    def training_step(self, batch, batch_idx):
        time.sleep(STEP_S)
        return torch.nn.functional.cross_entropy(self.conv(batch["image"]), batch["mask"])

    def validation_step(self, batch, batch_idx):
        time.sleep(VAL_S)

    def configure_optimizers(self):
        return SlowSGD(self.parameters(), lr=0.1)


def loader() -> DataLoader:
    return DataLoader(SlowData(), batch_size=2)


def fit(root, callbacks, module=None, **kwargs):
    trainer = L.Trainer(**{**dict(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                                  num_sanity_val_steps=0, default_root_dir=root), **kwargs}, callbacks=callbacks,
                        plugins=[Recorder(delay=WRITE_S)])
    trainer.fit(module or Net(), loader(), loader())
    return trainer


def test_the_phases_add_up_to_the_wall_clock_and_say_where_it_went(tmp_path):
    efficiency = TrainingEfficiency(warmup_steps=1)
    fit(tmp_path, [efficiency, LastCheckpoint(dirpath=str(tmp_path / "ckpt"))])
    result = json.loads((tmp_path / "efficiency.json").read_text())
    assert result == {**efficiency.result, "after_training_s": result["after_training_s"]}
    steps = result["steps"]
    assert steps == 7 and result["images"] == 2 * steps and result["passes"] == result["images"]  # 8 - 1 warm-up
    seconds = result["phases_s"]
    assert set(seconds) == set(PHASES)
    assert sum(seconds.values()) == pytest.approx(result["wall_s"], abs=0.002)
    assert seconds["forward_backward"] >= steps * STEP_S and seconds["optimizer"] >= steps * OPTIMIZER_S
    assert seconds["data_wait"] >= (steps - 1) * DATA_S  # the first timed batch was fetched in the warm-up
    assert seconds["validation"] >= 2 * 4 * VAL_S  # two validations of 4 batches, both in the timed window
    assert result["checkpoint_writes"] == 2 and seconds["checkpoint"] >= 2 * WRITE_S
    assert result["checkpoint_stall"] == pytest.approx(seconds["checkpoint"] / result["wall_s"], rel=1e-3)
    assert result["images_per_s"] == pytest.approx(result["images"] / result["wall_s"], rel=1e-3)
    assert result["gpu_busy"] is None and result["gpu_note"] == "not available on cpu"


def test_passes_count_the_sub_networks_of_each_step(tmp_path):
    efficiency = TrainingEfficiency(warmup_steps=2)
    fit(tmp_path, [efficiency], Net(Sampler()), max_epochs=1, limit_val_batches=0, enable_checkpointing=False)
    assert efficiency.result["steps"] == 2 and efficiency.result["passes"] == 2 * (3 + 1)  # steps 2 and 3


def test_training_stops_after_the_timed_seconds(tmp_path):
    efficiency = TrainingEfficiency(warmup_steps=0, seconds=0.2)
    trainer = fit(tmp_path, [efficiency], max_epochs=1000, limit_val_batches=0, enable_checkpointing=False)
    assert trainer.current_epoch < 1000 and 0.2 <= efficiency.result["wall_s"] < 0.2 + 10 * DATA_S


def test_gpu_busy_is_the_mean_of_the_samples_and_idle_the_share_at_the_floor():
    readings = iter([0.0, 50.0, 100.0, 3.0] * 1000)
    sampler = GpuBusy(lambda: next(readings), interval=0.005)
    sampler.start()
    time.sleep(0.1)
    result = sampler.stop()
    samples = sampler.samples
    assert result["gpu_samples"] == len(samples) >= 4
    assert result["gpu_busy"] == pytest.approx(sum(samples) / (100 * len(samples)))
    assert result["gpu_idle_samples"] == sum(s <= 5 for s in samples) / len(samples)
    assert GpuBusy.of(torch.device("cpu")) == (None, "not available on cpu")
