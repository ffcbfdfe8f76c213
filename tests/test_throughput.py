import csv

import lightning as L
import torch
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from hyctas_lightning.training.throughput import THROUGHPUT_METRICS, TrainingThroughput, images_in_batch


class Tiny(L.LightningModule):
    flops_per_batch = None  # not counted

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.conv(batch["image"]), batch["mask"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(batches: int, batch_size: int) -> DataLoader:
    items = [{"image": torch.randn(3, 8, 8), "mask": torch.randint(0, 2, (8, 8))} for _ in range(batches * batch_size)]
    return DataLoader(items, batch_size=batch_size)


def test_lightnings_throughput_monitor_counts_our_images(tmp_path):
    monitor = ThroughputMonitor(batch_size_fn=images_in_batch, window_size=3)
    trainer = L.Trainer(max_epochs=2, callbacks=[monitor], logger=CSVLogger(tmp_path, name="", version=""),
                        log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(Tiny(), loader(5, 4))
    trainer.logger.finalize("success")
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    samples = [float(r["train/samples"]) for r in rows if r.get("train/samples")]
    assert samples[-1] == 2 * 5 * 4
    speeds = [float(r[THROUGHPUT_METRICS[1]]) for r in rows if r.get(THROUGHPUT_METRICS[1])]
    assert len(speeds) == 2 * 5 - 2 and min(speeds) > 0  # from the third batch on (a window of three)
    assert THROUGHPUT_METRICS[0] not in rows[0]  # the all-processes figure only on several


def test_our_throughput_logs_the_same_figures_without_a_device_synchronisation(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: (_ for _ in ()).throw(AssertionError("synchronised")))
    trainer = L.Trainer(max_epochs=2, callbacks=[TrainingThroughput(window_size=3)], log_every_n_steps=2,
                        logger=CSVLogger(tmp_path, name="", version=""), enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Tiny(), loader(5, 4))
    trainer.logger.finalize("success")
    rows = [r for r in csv.DictReader((tmp_path / "metrics.csv").open()) if r.get("train/samples")]
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10]  # every log_every_n_steps optimiser steps
    assert float(rows[-1]["train/samples"]) == 2 * 5 * 4
    assert rows[0][THROUGHPUT_METRICS[1]] == ""  # two batches: the window of three is not full yet
    assert all(float(r[THROUGHPUT_METRICS[1]]) > 0 for r in rows[1:]) and THROUGHPUT_METRICS[0] not in rows[0]
