"""Supernet samplers: branch frequencies, fairness of ops, progressive phases, head coverage, and training."""
from collections import Counter

import lightning as L
import pytest
import torch

from hyctas_lightning.data import SyntheticStreetDataModule
from hyctas_lightning.search_space import SearchSpace
from hyctas_lightning.training import SupernetModule, build_sampler
from hyctas_lightning.training.sampling import branch_frequencies, head_updates


def test_single_path_branch_counts_follow_rho_within_two_points():
    space = SearchSpace(layers=8)
    sampler = build_sampler("single", space, seed=3)
    freq = branch_frequencies(sampler, 3000)
    assert sum(len(sampler.sample(s)) for s in range(10)) == 10  # one sub-network per step
    for n, rho in zip((1, 2, 3), space.branch_prior):
        assert abs(freq[n] - rho) < 0.02, (freq, space.branch_prior)


def test_sandwich_effective_frequencies_are_the_documented_ones():
    space = SearchSpace(layers=8)
    freq = branch_frequencies(build_sampler("sandwich", space, num_random=2), 1500)
    r1, r2, r3 = space.branch_prior
    expected = {1: (1 + 2 * r1) / 4, 2: 2 * r2 / 4, 3: (1 + 2 * r3) / 4}  # 0.35 / 0.15 / 0.50
    assert all(abs(freq[n] - expected[n]) < 0.02 for n in expected), (freq, expected)


def test_rotating_smallest_trains_every_one_branch_head_each_three_steps():
    space = SearchSpace(layers=6, fch=4)
    fixed = head_updates(build_sampler("sandwich", space, num_random=0), 30)
    rotating = head_updates(build_sampler("sandwich", space, num_random=0, rotate_smallest=True), 30)
    assert fixed == {(32,): 1.0, (8, 16, 32): 1.0}
    assert rotating[(8,)] == rotating[(16,)] == rotating[(32,)] == pytest.approx(1 / 3)
    for end in (8, 16, 32):
        small = space.smallest(end)
        assert small.end_scales == (end,) and small.num_branches == 1


def test_fair_sampling_trains_each_op_of_each_cell_once_per_step():
    space = SearchSpace(layers=6, fch=4)
    sampler = build_sampler("fair", space, seed=1)
    for step in range(20):
        drawn = [a for _, a in sampler.sample(step)]
        assert len(drawn) == len(space.ops)
        assert len({a.hash for a in drawn}) == len(drawn)
        # one topology: downs, nodes, widths and branch count agree; at every cell the ops are a permutation
        topology = {tuple((b.downs, b.nodes, b.widths) for b in a.branches) for a in drawn}
        assert len(topology) == 1
        for layer in range(space.layers):
            for branch in range(drawn[0].num_branches):
                assert sorted(a.branches[branch].ops[layer] for a in drawn) == sorted(space.ops)


def test_fair_sampling_with_the_largest_first_teaches_in_place():
    space = SearchSpace(layers=4, fch=4)
    plain, led = build_sampler("fair", space, seed=2), build_sampler("fair", space, seed=2, with_largest=True)
    assert led.sample(3) == [("largest", space.largest())] + plain.sample(3)
    module = SupernetModule(space, num_classes=8, sampling="fair", sampler_args={"with_largest": True},
                            distill="inplace")
    assert module.sampler.state_dict()["with_largest"] is True
    for sampling in ("single", "fair"):  # no largest sub-network to learn from
        with pytest.raises(ValueError, match="inplace"):
            SupernetModule(space, num_classes=8, sampling=sampling, distill="inplace")


def test_progressive_phases_grow_from_the_largest_to_the_whole_space():
    space = SearchSpace(layers=6, fch=4)
    sampler = build_sampler("progressive", space, num_random=2, phases=(0.1, 0.3, 0.6), total_steps=100)
    assert [sampler.phase(s) for s in (0, 9, 10, 30, 60, 99)] == ["largest", "largest", "widths", "ops", "full", "full"]
    assert [n for n, _ in sampler.sample(5)] == ["largest"]
    widths = [a for s in range(10, 30) for n, a in sampler.sample(s) if n != "largest"]
    assert all(a.num_branches == 3 and set(a.branches[0].ops) == {space.largest_op} for a in widths)
    assert len({w for a in widths for w in a.branches[0].widths}) > 1
    ops = {op for s in range(30, 60) for n, a in sampler.sample(s) if n != "largest" for op in a.branches[0].ops}
    assert ops == set(space.ops)
    full = Counter(a.num_branches for s in range(60, 100) for n, a in sampler.sample(s) if n != "largest")
    assert set(full) == {1, 2, 3}
    with pytest.raises(ValueError, match="phases"):
        build_sampler("progressive", space, phases=(0.5, 0.2, 0.9))
    with pytest.raises(ValueError, match="run's length"):
        build_sampler("progressive", space).sample(0)


def test_unknown_sampler_and_bad_options_fail_clearly():
    with pytest.raises(ValueError, match="not a registered sampler"):
        SupernetModule(SearchSpace(layers=4, fch=4), num_classes=8, sampling="annealing")
    with pytest.raises(ValueError, match="sampler_args for sampling 'single'"):
        SupernetModule(SearchSpace(layers=4, fch=4), num_classes=8, sampling="single",
                       sampler_args={"rotate_smallest": True})
    with pytest.raises(ValueError, match="teacher"):
        SupernetModule(SearchSpace(layers=4, fch=4), num_classes=8, distill="teacher")


@pytest.mark.parametrize("sampling", ["single", "fair", "progressive"])
def test_every_sampling_mode_trains(tmp_path, sampling):
    L.seed_everything(0)
    module = SupernetModule(SearchSpace(layers=4, fch=4), num_classes=8, sampling=sampling, val_random=0,
                            sampler_args={"phases": [0.0, 0.0, 0.0]} if sampling == "progressive" else None)
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    data = SyntheticStreetDataModule(train_samples=32, val_samples=8, size=(32, 64), batch_size=8)
    before = [p.detach().clone() for p in module.supernet.parameters()]
    trainer = L.Trainer(max_steps=8, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, data)
    assert trainer.global_step == 8 and module.sampler.total_steps == 8
    losses = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("train/loss")}
    assert losses and all(torch.isfinite(v) for v in losses.values())
    changed = sum(not torch.equal(a, b) for a, b in zip(before, module.supernet.parameters()))
    assert changed > 0.2 * len(before)


class LossRecorder(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def test_single_path_training_lowers_the_loss(tmp_path):
    L.seed_everything(0)
    module = SupernetModule(SearchSpace(layers=4, fch=4), num_classes=8, sampling="single", val_random=0)
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    data = SyntheticStreetDataModule(train_samples=64, val_samples=8, size=(32, 64), batch_size=16)
    recorder = LossRecorder()
    L.Trainer(max_steps=60, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
              enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0,
              callbacks=[recorder]).fit(module, data)
    first, last = recorder.losses[:15], recorder.losses[-15:]
    assert sum(last) / len(last) < 0.8 * sum(first) / len(first), recorder.losses


def test_distillation_from_a_fixed_teacher_trains_and_stays_out_of_checkpoints(tmp_path):
    from hyctas_lightning.training import SegmentationModule

    data = SyntheticStreetDataModule(train_samples=8, val_samples=4, size=(32, 64), batch_size=4)
    quiet = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    teacher = SegmentationModule(arch="hyctas_s", num_classes=8, fch=4, aux_weight=0.0, warmup_iters=0)
    trainer = L.Trainer(max_steps=1, default_root_dir=tmp_path / "teacher", **quiet)
    trainer.fit(teacher, data)
    trainer.save_checkpoint(tmp_path / "teacher.ckpt")
    module = SupernetModule(SearchSpace(layers=4, fch=4), num_classes=8, distill="teacher", val_random=0,
                            teacher=str(tmp_path / "teacher.ckpt"))
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.05)
    trainer = L.Trainer(max_steps=2, default_root_dir=tmp_path / "supernet", **quiet)
    trainer.fit(module, data)
    assert module._teacher is not None and not any(p.requires_grad for p in module._teacher.parameters())
    trainer.save_checkpoint(tmp_path / "supernet.ckpt")
    saved = torch.load(tmp_path / "supernet.ckpt", weights_only=True)["state_dict"]
    assert not [k for k in saved if k.startswith("_teacher")]
    SupernetModule.load_from_checkpoint(tmp_path / "supernet.ckpt", weights_only=True)  # loads as it was saved
