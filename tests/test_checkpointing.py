"""Checkpoints that do not stall training: ``last.ckpt`` by the clock, at the end, at a deadline and on SIGTERM,
written by a thread (``AsyncAtomicCheckpointIO``) that never holds two states or writes one file twice at once,
and a weights-only file the search reads."""
from __future__ import annotations

import os
import signal
import time

import lightning as L
import pytest
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.demos.boring_classes import BoringModel

from helpers import ROOT, Recorder
from hyctas_lightning.cli import main
from hyctas_lightning.cli.errors import EXIT_CHECKPOINT
from hyctas_lightning.data import SyntheticStreetDataModule
from hyctas_lightning.models import load_supernet
from hyctas_lightning.search_space import SearchSpace
from hyctas_lightning.training import AsyncAtomicCheckpointIO, Deadline, LastCheckpoint, SupernetModule


class Counting(BoringModel):
    """Counts ended epochs into its checkpoints, as a learning-rate step at the epoch's end would change them."""

    def __init__(self):
        super().__init__()
        self.epochs_ended = 0

    def on_train_epoch_end(self):
        self.epochs_ended += 1

    def on_save_checkpoint(self, checkpoint):
        checkpoint["epochs_ended"] = self.epochs_ended


class Clock(L.Callback):
    """A fake clock for ``LastCheckpoint``: 10 s pass with every step."""

    def __init__(self, callback: LastCheckpoint):
        self.now = 0.0
        callback.clock = lambda: self.now

    def on_train_batch_end(self, *args):
        self.now += 10.0


def fit(root, callbacks, io=None, model=None, **kwargs):
    args = dict(max_epochs=2, limit_train_batches=4, limit_val_batches=0, logger=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=root)
    trainer = L.Trainer(**{**args, **kwargs}, callbacks=callbacks, plugins=[io] if io else None)
    trainer.fit(model or Counting())
    return trainer


@pytest.mark.parametrize("seconds, written", [
    (25, [(3, 0), (6, 1), (8, 2)]),  # mid-epoch at steps 3 and 6 (30 s, 60 s), the final state at the end
    (35, [(4, 1), (8, 2)]),          # due on an epoch's last step: written at the epoch's end, after its hooks
])
def test_last_ckpt_by_the_clock(tmp_path, seconds, written):
    io, last = Recorder(), LastCheckpoint(dirpath=str(tmp_path), every_seconds=seconds)
    fit(tmp_path, [Clock(last), last], io)
    assert [(step, ended) for _, step, ended in io.saved] == written
    assert {name for name, *_ in io.saved} == {"last.ckpt"}


def test_without_a_schedule_last_ckpt_is_written_every_epoch(tmp_path):
    io = Recorder()
    fit(tmp_path, [LastCheckpoint(dirpath=str(tmp_path))], io, max_epochs=3)
    assert [(step, ended) for _, step, ended in io.saved] == [(4, 1), (8, 2), (12, 3)]


def test_a_deadline_beside_last_checkpoint_writes_the_final_state_once(tmp_path):
    io = Recorder()
    fit(tmp_path, [Deadline(seconds=0), LastCheckpoint(dirpath=str(tmp_path), every_seconds=3600)], io)
    assert [step for _, step, _ in io.saved] == [1]  # stopped after the first step, written once
    io = Recorder()
    fit(tmp_path / "alone", [Deadline(seconds=0)], io, enable_checkpointing=False)  # alone, the deadline writes it
    assert [(name, step) for name, step, _ in io.saved] == [("last.ckpt", 1)]


class Terminate(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 3:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_saves_the_state_of_the_running_step_then_resumes(tmp_path):
    io = AsyncAtomicCheckpointIO(Recorder(delay=0.2))
    with pytest.raises(SystemExit):  # Lightning's SIGTERMException, once the step ended and the file is written
        fit(tmp_path, [Terminate(), LastCheckpoint(dirpath=str(tmp_path), every_seconds=3600)], io, max_epochs=5)
    assert [(name, step) for name, step, _ in io.checkpoint_io.saved] == [("last.ckpt", 3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # whole, no temporary file left
    resumed = L.Trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=0, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    resumed.fit(Counting(), ckpt_path=str(tmp_path / "last.ckpt"))
    assert resumed.global_step == 8


def test_the_writer_thread_holds_one_state_and_writes_one_file_at_a_time(tmp_path):
    recorder = Recorder(delay=0.4)
    io = AsyncAtomicCheckpointIO(recorder)
    weights = torch.zeros(3)
    start = time.perf_counter()
    io.save_checkpoint({"w": weights, "global_step": 1}, tmp_path / "last.ckpt")
    returned = time.perf_counter() - start
    weights += 1  # training goes on: the file holds the state at the call
    io.save_checkpoint({"w": weights, "global_step": 2}, tmp_path / "last.ckpt")  # waits for the first write
    assert len(recorder.saved) == 1
    io.teardown()  # what the trainer does at the end: wait for the last write
    assert returned < recorder.delay and recorder.most_at_once == 1
    assert [step for _, step, _ in recorder.saved] == [1, 2]
    assert torch.equal(torch.load(tmp_path / "last.ckpt", weights_only=True)["w"], torch.ones(3))


def test_a_failed_write_is_raised_in_the_training_process(tmp_path):
    class Failing(CheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            raise OSError(f"{path}: no space left on device")

        def load_checkpoint(self, path, map_location=None):
            raise NotImplementedError

        def remove_checkpoint(self, path):
            pass

    io = AsyncAtomicCheckpointIO(Failing())
    with pytest.raises(OSError, match="no space left"):  # by the next save or at the end, whichever comes first
        io.save_checkpoint({"global_step": 1}, tmp_path / "last.ckpt")
        io.teardown()


@pytest.mark.parametrize("name", ["last.ckpt", "sub/weights.ckpt"])
def test_weights_file_is_a_name_beside_last_ckpt(name):
    with pytest.raises(ValueError, match="weights_file: a file name beside last.ckpt"):
        LastCheckpoint(weights_file=name)


def test_the_weights_file_holds_what_the_search_needs_without_the_optimiser_state(tmp_path, capsys):
    L.seed_everything(0)
    module = SupernetModule(SearchSpace(layers=4, fch=4), num_classes=8, val_random=1)
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    data = SyntheticStreetDataModule(train_samples=4, val_samples=4, size=(64, 128), batch_size=4)  # 1 step
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, default_root_dir=tmp_path, plugins=[AsyncAtomicCheckpointIO()],
                        callbacks=[LastCheckpoint(weights_file="supernet.ckpt")])
    trainer.fit(module, data)
    folder = tmp_path / "checkpoints"
    weights = torch.load(folder / "supernet.ckpt", weights_only=True)
    assert "optimizer_states" not in weights and weights["hyctas"]["kind"] == "hyctas-supernet"
    momentum = sum(s["momentum_buffer"].nbytes for s in torch.load(folder / "last.ckpt", weights_only=True)[
        "optimizer_states"][0]["state"].values())  # as large as the weights that were trained
    assert (folder / "last.ckpt").stat().st_size - (folder / "supernet.ckpt").stat().st_size > 0.95 * momentum
    (a, meta_a), (b, meta_b) = load_supernet(folder / "supernet.ckpt"), load_supernet(folder / "last.ckpt")
    assert meta_a == meta_b
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    resume = ["fit", "--config", str(ROOT / "configs/demo/supernet.yaml"), "--ckpt_path", str(folder / "supernet.ckpt"),
              f"--trainer.default_root_dir={tmp_path / 'resumed'}"]
    assert main(resume) == EXIT_CHECKPOINT  # refused before anything is built, with what to do instead
    assert "holds the weights only" in capsys.readouterr().err and not (tmp_path / "resumed").exists()
