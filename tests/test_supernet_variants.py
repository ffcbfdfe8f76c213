"""Supernet variants of the ranking study: the split (few-shot) supernet, warm-started from the one-shot one and
trained on its part only, and complexity-aware step sizes."""
import lightning as L
import pytest
import torch

from hyctas_lightning.data import SyntheticStreetDataModule
from hyctas_lightning.models.blocks import combo_key
from hyctas_lightning.search_space import SearchSpace
from hyctas_lightning.training import SPLITS, ComplexityScale, SupernetModule, WarmStart, build_sampler

SPACE = SearchSpace(layers=4, fch=4, head_sharing="combination")
QUIET = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
             enable_checkpointing=False)


def data() -> SyntheticStreetDataModule:
    return SyntheticStreetDataModule(train_samples=16, val_samples=4, size=(32, 64), batch_size=4)


def fit(module: SupernetModule, steps: int, root, callbacks=()) -> L.Trainer:
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9,
                                                          weight_decay=5e-4)
    trainer = L.Trainer(max_steps=steps, default_root_dir=root, callbacks=list(callbacks), **QUIET)
    trainer.fit(module, data())
    return trainer


@pytest.mark.parametrize("key", ["branches", "op_family"])
def test_a_split_part_draws_only_its_own_members_and_every_member_has_a_part(key):
    split = SPLITS.get(key)
    parts = split.parts(SPACE)
    assert len(parts) == 3
    for part in parts:
        sampler = build_sampler("split", SPACE, seed=3, key=key, part=part, num_random=2)
        drawn = [arch for step in range(40) for _, arch in sampler.sample(step)]
        assert {split.part_of(a) for a in drawn} == {part}
        assert len({a.hash for a in drawn}) > 30  # the whole part, not a few members
        assert [a.hash for _, a in sampler.sample(7)] == [a.hash for _, a in sampler.sample(7)]  # resumable
    unconditioned = build_sampler("single", SPACE, seed=0)
    assert {split.part_of(a) for step in range(60) for _, a in unconditioned.sample(step)} == set(parts)


def test_a_split_refuses_an_unknown_part_or_key():
    with pytest.raises(ValueError, match=r"part: the split 'branches' of this space has parts \[1, 2, 3\]"):
        build_sampler("split", SPACE, key="branches", part=4)
    with pytest.raises(ValueError, match="key: 'depth' is not a registered split"):
        build_sampler("split", SPACE, key="depth", part=1)


def heads_of(module: SupernetModule, combos) -> dict:
    keys = {combo_key(c) for c in combos}
    return {n: p.detach().clone() for n, p in module.supernet.named_parameters()
            if n.split(".")[0] in ("heads", "classifiers") and n.split(".")[1] in keys}


def test_split_parts_start_from_the_one_shot_weights_and_train_only_their_members(tmp_path):
    L.seed_everything(0)
    one_shot = SupernetModule(SPACE, num_classes=8, sampling="single", val_random=0)
    trainer = fit(one_shot, 3, tmp_path / "one_shot")
    trainer.save_checkpoint(tmp_path / "one_shot.ckpt")
    start = {n: p.detach().clone() for n, p in one_shot.supernet.named_parameters()}

    class Before(L.Callback):
        def on_train_start(self, trainer, module):
            self.state = {n: p.detach().clone() for n, p in module.supernet.named_parameters()}

    multi = [(8, 16), (8, 32), (8, 16, 32)]
    parts = {}
    for part in (1, 3):
        L.seed_everything(part)  # another initialisation: only the warm start can make the weights equal
        module = SupernetModule(SPACE, num_classes=8, sampling="split", val_random=0,
                                sampler_args={"key": "branches", "part": part, "num_random": 2})
        before = Before()
        fit(module, 3, tmp_path / f"part{part}", [WarmStart(str(tmp_path / "one_shot.ckpt")), before])
        assert all(torch.equal(before.state[n], start[n]) for n in start), part
        parts[part] = module
    one_branch = [(8,), (16,), (32,)]
    # each part's updates come from its own members: heads it never runs keep the one-shot weights exactly
    assert all(torch.equal(v, start[n]) for n, v in heads_of(parts[1], multi).items())
    assert all(torch.equal(v, start[n]) for n, v in heads_of(parts[3], one_branch).items())
    assert any(not torch.equal(v, start[n]) for n, v in heads_of(parts[1], one_branch).items())
    assert any(not torch.equal(v, start[n]) for n, v in heads_of(parts[3], multi).items())
    # after the split the parts are separate networks: no tensor is shared, and the shared trunk went two ways
    stem = [n for n in start if n.startswith("stem.")]
    a, b = dict(parts[1].supernet.named_parameters()), dict(parts[3].supernet.named_parameters())
    assert not {p.data_ptr() for p in a.values()} & {p.data_ptr() for p in b.values()}
    assert any(not torch.equal(a[n], b[n]) for n in stem)


def test_warm_start_refuses_a_checkpoint_of_another_space(tmp_path):
    one_shot = SupernetModule(SPACE, num_classes=8, sampling="single", val_random=0)
    trainer = fit(one_shot, 1, tmp_path / "one_shot")
    trainer.save_checkpoint(tmp_path / "one_shot.ckpt")
    other = SupernetModule(SearchSpace(layers=5, fch=4, head_sharing="combination"), num_classes=8,
                           sampling="single", val_random=0)
    with pytest.raises(ValueError, match="WarmStart checkpoint .*one_shot.ckpt: its search space"):
        fit(other, 1, tmp_path / "other", [WarmStart(str(tmp_path / "one_shot.ckpt"))])


def test_complexity_scale_follows_its_documented_formula():
    scale = ComplexityScale(SPACE, 2.0)
    smallest, largest = SPACE.smallest(), SPACE.largest()
    assert scale.complexity(smallest) == 0.0 and scale.complexity(largest) == 1.0
    assert scale(largest, 0, 100) == 1.0 and scale(smallest, 100, 100) == 1.0
    assert scale(largest, 100, 100) == pytest.approx(3.0) and scale(largest, 50, 100) == pytest.approx(2.0)
    middle = build_sampler("single", SPACE, seed=0).sample(0)[0][1]
    c = scale.complexity(middle)
    assert 0 < c < 1 and scale(middle, 25, 100) == pytest.approx(1 + 2.0 * c * 0.25)
    with pytest.raises(ValueError, match="complexity_lr needs the run's length"):
        scale(middle, 1, 0)
    with pytest.raises(ValueError, match="complexity_lr: >= 0"):
        SupernetModule(SPACE, num_classes=8, complexity_lr=-1.0)


def test_complexity_aware_training_scales_each_sub_networks_gradient(tmp_path):
    L.seed_everything(0)
    module = SupernetModule(SPACE, num_classes=8, sampling="sandwich", num_random=1, val_random=0,
                            complexity_lr=4.0)
    backpropagated = []
    original = module.manual_backward

    def record(loss, *args, **kwargs):
        backpropagated.append(float(loss.detach()))
        return original(loss, *args, **kwargs)

    module.manual_backward = record

    class Logged(L.Callback):
        def __init__(self):
            self.rows = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            m = trainer.callback_metrics
            self.rows.append({n: (float(m[f"train/loss_{n}"]), float(m[f"train/scale_{n}"]))
                              for n in ("largest", "smallest", "random0")})

    logged = Logged()
    fit(module, 4, tmp_path, [logged])
    expected = ComplexityScale(SPACE, 4.0)
    assert len(logged.rows) == 4
    for step, row in enumerate(logged.rows):
        for i, (name, arch) in enumerate(module.sampler.sample(step)):
            loss, scale = row[name]
            assert scale == pytest.approx(expected(arch, step, 4)), (step, name)
            assert backpropagated[3 * step + i] == pytest.approx(loss * scale, rel=1e-5), (step, name)
    assert logged.rows[-1]["largest"][1] == pytest.approx(1 + 4.0 * 3 / 4)  # the largest: c = 1
    assert logged.rows[-1]["smallest"][1] == 1.0
