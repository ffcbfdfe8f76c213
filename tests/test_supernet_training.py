"""Supernet training: sandwich sampling, the branch prior, learning, resuming."""
from collections import Counter

import lightning as L
import pytest
import torch
from scipy.stats import chisquare

from hyctas_lightning.data import SyntheticStreetDataModule
from hyctas_lightning.search_space import SearchSpace
from hyctas_lightning.training import SandwichSampler, SupernetModule
from hyctas_lightning.training.losses import segmentation_loss

SPACE = dict(layers=5, fch=4)


def test_random_samples_follow_the_branch_prior():
    space = SearchSpace(layers=8)
    sampler = SandwichSampler(space, num_random=2, seed=0)
    counts = Counter(a.num_branches for step in range(1500) for name, a in sampler.sample(step)
                     if name.startswith("random"))
    observed = [counts[n] for n in (1, 2, 3)]
    expected = [p * sum(observed) for p in space.branch_prior]
    assert chisquare(observed, expected).pvalue > 0.01, (observed, expected)
    # and clearly not uniform
    assert chisquare(observed).pvalue < 1e-6


def test_sandwich_holds_largest_smallest_and_randoms():
    space = SearchSpace(**SPACE)
    names = [n for n, _ in SandwichSampler(space, num_random=3).sample(0)]
    assert names == ["largest", "smallest", "random0", "random1", "random2"]
    a, b = SandwichSampler(space, seed=1).sample(7), SandwichSampler(space, seed=1).sample(7)
    assert [x.hash for _, x in a] == [x.hash for _, x in b]
    assert [x.hash for _, x in a] != [x.hash for _, x in SandwichSampler(space, seed=1).sample(8)]


def test_bootstrapped_loss_focuses_on_hard_pixels():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0] = 5.0  # confident class 0 everywhere
    target = torch.tensor([[[0, 0], [0, 1]]])
    full = segmentation_loss(logits, target)
    hard = segmentation_loss(logits, target, bootstrap_ratio=0.25)
    assert hard > full * 3
    target[0, 1, 1] = 255
    assert segmentation_loss(logits, target, bootstrap_ratio=0.25) < full


def make_data(**kw):
    args = dict(train_samples=96, val_samples=16, size=(64, 128), batch_size=16, seed=0)
    args.update(kw)
    return SyntheticStreetDataModule(**args)


class RecordArchs(L.Callback):
    def __init__(self):
        self.seen = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen[trainer.global_step] = [a.hash for _, a in module.sampler.sample(trainer.global_step)]


def make_module(**kw):
    module = SupernetModule(SearchSpace(**SPACE), num_classes=8, val_random=1, **kw)
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    return module


def trainer(root, epochs, callbacks=(), **kw):
    return L.Trainer(max_epochs=epochs, default_root_dir=root, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, callbacks=list(callbacks), **kw)


def test_training_improves_largest_and_smallest(tmp_path):
    L.seed_everything(0)
    module, data = make_module(), make_data()
    t = trainer(tmp_path, 6)
    t.fit(module, data)
    trained = t.validate(module, data, verbose=False)[0]
    L.seed_everything(0)
    fresh = make_module()
    # untrained baseline, recalibrated on the same kind of batches
    data.setup("fit")
    fresh._calibration = [next(iter(data.train_dataloader()))["image"]]
    untrained = trainer(tmp_path / "u", 1).validate(fresh, data, verbose=False)[0]
    for name in ("largest", "smallest"):
        after, before = trained[f"val/mIoU_{name}"], untrained[f"val/mIoU_{name}"]
        assert after > before + 0.08 and after > 2 * before, (name, trained, untrained)


def test_checkpoint_carries_what_search_needs(tmp_path):
    module, data = make_module(), make_data(train_samples=32)
    t = trainer(tmp_path, 1, callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    t.fit(module, data)
    ckpt = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    meta = ckpt["hyctas"]
    assert meta["kind"] == "hyctas-supernet" and SearchSpace.from_dict(meta["space"]) == module.space
    assert meta["data"]["class_path"] == "synthetic" and len(meta["data"]["classes"]) == 8
    restored = SupernetModule.load_from_checkpoint(tmp_path / "last.ckpt")
    assert restored.space == module.space
    for k, v in module.state_dict().items():
        assert torch.equal(v, restored.state_dict()[k])


def test_loading_a_checkpoint_of_the_wrong_kind_fails_clearly(tmp_path):
    path = tmp_path / "other.ckpt"
    module = make_module()
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": L.__version__}, path)
    with pytest.raises(ValueError, match="not a hyctas checkpoint .*needs a supernet checkpoint"):
        SupernetModule.load_from_checkpoint(path)


def test_resume_continues_with_the_same_architectures(tmp_path):
    def run(root, epochs, ckpt_path=None, recorder=None):
        L.seed_everything(0)
        module = make_module()
        cb = [L.pytorch.callbacks.ModelCheckpoint(dirpath=root, save_last=True), recorder or RecordArchs()]
        trainer(root, epochs, callbacks=cb, deterministic=True).fit(module, make_data(train_samples=48),
                                                                    ckpt_path=ckpt_path)
        return module, cb[1]

    full, full_rec = run(tmp_path / "a", 3)
    run(tmp_path / "b", 1)  # "killed" after the first epoch
    resumed, resumed_rec = run(tmp_path / "b", 3, ckpt_path=tmp_path / "b" / "last.ckpt")
    assert min(resumed_rec.seen) == 3  # continued at step 3, not from scratch
    assert sorted(resumed_rec.seen) == [3, 4, 5, 6, 7, 8]
    assert all(resumed_rec.seen[s] == full_rec.seen[s] for s in resumed_rec.seen)
    assert resumed.global_step == full.global_step == 9
