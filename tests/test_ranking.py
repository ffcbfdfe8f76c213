"""The ranking diagnostic: panel, supernet estimates through the shared scorer, cached and resumable standalone
references, rank correlation, the callback, and `hyctas validate` of a supernet."""
import csv
import json
import math

import lightning as L
import pytest
import torch

from hyctas_lightning.cli import main as hyctas_main
from hyctas_lightning.data import SyntheticStreetDataModule, datamodule_spec
from hyctas_lightning.models import ChildNet
from hyctas_lightning.ranking import (
    Finetune,
    FinetuneScorer,
    RankingCallback,
    RankingReport,
    ReferenceCache,
    StandaloneRecipe,
    correlate,
    estimate_panel,
    finetune_from,
    load_references,
    references_for,
)
from hyctas_lightning.search import SearchConfig
from hyctas_lightning.search.evaluator import SupernetEvaluator, collect_images
from hyctas_lightning.search_space import SearchSpace, ranking_panel
from hyctas_lightning.training import SupernetModule, standalone
from hyctas_lightning.training.standalone import train_standalone

SPACE = SearchSpace(layers=4, fch=4)
DATA = dict(train_samples=48, val_samples=8, size=(32, 64), batch_size=8)


def test_panel_is_fixed_distinct_and_spread_over_branch_counts():
    panel = ranking_panel(SPACE, 6, seed=0)
    assert list(panel) == ["largest", "smallest"] + [f"random{i}" for i in range(6)]
    assert [panel[f"random{i}"].num_branches for i in range(6)] == [1, 2, 3, 1, 2, 3]
    assert len({a.hash for a in panel.values()}) == len(panel)
    assert {n: a.hash for n, a in panel.items()} == {n: a.hash for n, a in ranking_panel(SPACE, 6, 0).items()}
    assert ranking_panel(SPACE, 6, 1)["random0"].hash != panel["random0"].hash


def test_correlate_uses_the_bootstrapped_rank_correlation():
    stats = correlate([1, 2, 3, 4], [1, 3, 2, 4], bootstrap=50)
    assert stats.kendall_tau == pytest.approx(2 / 3) and stats.spearman_rho == pytest.approx(0.8)
    assert stats.kendall_ci[0] <= stats.kendall_tau <= stats.kendall_ci[1]
    assert correlate([1, 2], [1, 2]) is None  # too few pairs to rank
    constant = correlate([0.1, 0.1, 0.1], [1, 2, 3])  # constant predictions rank nothing
    assert math.isnan(constant.kendall_tau) and math.isnan(constant.spearman_rho)


def write_config(path, trainer: str) -> None:
    path.write_text(
        f"seed_everything: 0\ntrainer:\n  enable_progress_bar: false\n  enable_model_summary: false\n{trainer}"
        "model:\n  class_path: hyctas_lightning.training.SupernetModule\n  init_args:\n"
        "    space: {layers: 4, fch: 4}\n    val_random: 3\n    calibration_images: 16\n"
        "optimizer:\n  class_path: torch.optim.SGD\n  init_args: {lr: 0.05, momentum: 0.9}\n"
        "data:\n  class_path: hyctas_lightning.data.SyntheticStreetDataModule\n"
        f"  init_args: {json.dumps(DATA)}\n")


@pytest.fixture(scope="module")
def supernet(tmp_path_factory):
    """A supernet briefly trained by `hyctas fit`, its checkpoint and its data."""
    root = tmp_path_factory.mktemp("ranking")
    config = root / "fit.yaml"
    write_config(config, f"  max_steps: 12\n  limit_val_batches: 0\n  logger: false\n  default_root_dir: {root}\n"
                         "  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
                         f"      init_args: {{dirpath: {root}, save_last: true}}\n")
    assert hyctas_main(["fit", "--config", str(config)]) == 0
    module = SupernetModule.load_from_checkpoint(root / "last.ckpt", val_random=3, calibration_images=16)
    return module, SyntheticStreetDataModule(**DATA), root / "last.ckpt"


def test_diagnostic_estimates_equal_supernet_validation_and_the_search_evaluator(supernet):
    module, data, _ = supernet
    validation = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    validation.validate(module, data, verbose=False)
    estimates = estimate_panel(module.supernet, module.val_archs, data, 8, calibration_images=16, seed=0)
    assert estimates.keys() == module.val_scores.keys()
    for name, value in estimates.items():
        assert value == pytest.approx(module.val_scores[name], abs=1e-6), name
    evaluator = SupernetEvaluator(module.supernet, collect_images(data, "train", 16, 0, False),
                                  collect_images(data, "val", None, 0, True),
                                  SearchConfig(latency_backend="cpu", latency_size=(32, 64), latency_warmup=1,
                                               latency_runs=1))
    for name in ("largest", "random1"):
        measured = evaluator(module.val_archs[name]).values["miou"]
        assert measured == pytest.approx(estimates[name], abs=1e-6), name


def test_collected_calibration_images_are_reproducible_and_leave_training_alone(supernet):
    _, data, _ = supernet
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    a = collect_images(data, "train", 12, seed=3, with_masks=False)
    assert torch.equal(torch.rand(1), expected)  # the global random stream is untouched
    b = collect_images(data, "train", 12, seed=3, with_masks=False)
    assert [x.shape[0] for x in a] == [8, 4] and all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], collect_images(data, "train", 12, seed=4, with_masks=False)[0])


def test_standalone_references_are_cached_and_resume(supernet, tmp_path, monkeypatch):
    _, data, _ = supernet
    panel = ranking_panel(SPACE, 3, seed=0)
    spec = datamodule_spec(data)  # settings typed as dataclasses (transforms) must not stop the resume below
    spec = {**spec, "init_args": {**spec["init_args"], "transforms": {"hflip": True}}}
    cache = ReferenceCache(tmp_path, StandaloneRecipe(steps=6, warmup_iters=1, checkpoint_every=2), spec)
    arch = panel["random0"]
    assert train_standalone(arch, cache, max_time_s=0.0) is None  # stopped after one step, checkpoint left
    assert (cache.run_dir(arch) / "checkpoints" / "last.ckpt").is_file()
    steps = torch.load(cache.run_dir(arch) / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert 1 <= steps < 6
    result = train_standalone(arch, cache)
    assert result["steps"] == 6 and 0 < result["miou"] <= 1
    for name in ("random1", "random2"):
        train_standalone(panel[name], cache)
    monkeypatch.setattr(standalone, "build_datamodule", lambda *a, **k: pytest.fail("trained a cached reference"))
    assert train_standalone(arch, cache) == json.loads(cache.path(arch).read_text())
    refs = load_references(cache.dir)
    assert set(refs) == {panel[n].hash for n in ("random0", "random1", "random2")}
    # another recipe or other data is another cache entry
    other = ReferenceCache(tmp_path, StandaloneRecipe(steps=7), spec)
    assert other.key != cache.key and other.get(arch) is None
    moved = ReferenceCache(tmp_path, cache.recipe, {**spec, "init_args": {**spec["init_args"], "num_workers": 3}})
    assert moved.key == cache.key  # loader settings do not change results

    report = RankingReport(panel, {n: 0.1 * i for i, n in enumerate(panel)}, references_for(panel, refs))
    summary = report.summary()
    assert summary["n"] == 3 and -1 <= summary["kendall_tau"] <= 1
    assert "Kendall tau" in report.table() and json.dumps(report.to_dict())


def test_ranking_callback_logs_tau_against_references(supernet, tmp_path):
    module, data, _ = supernet
    refs = tmp_path / "refs"
    refs.mkdir()
    archs = module.val_archs
    for i, name in enumerate(["random0", "random1", "random2"]):
        (refs / f"{archs[name].hash}.json").write_text(json.dumps({"miou": 0.1 + 0.1 * i}))
    callback = RankingCallback(str(refs))
    trainer = L.Trainer(logger=L.pytorch.loggers.CSVLogger(tmp_path), enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[callback])
    trainer.validate(module, data, verbose=False)
    expected = correlate([module.val_scores[n] for n in ("random0", "random1", "random2")], [0.1, 0.2, 0.3])
    assert float(trainer.callback_metrics["rank/n"]) == 3
    assert float(trainer.callback_metrics["rank/kendall_tau"]) == pytest.approx(expected.kendall_tau, nan_ok=True)
    assert callback.report.references.keys() == {"random0", "random1", "random2"}


def validate_metrics(tmp_path, ckpt, calibration_images):
    """`hyctas validate --ckpt_path` of the supernet; its logged metrics."""
    config = tmp_path / "validate.yaml"
    write_config(config, "  logger:\n    class_path: lightning.pytorch.loggers.CSVLogger\n"
                         "    init_args: {name: '', version: ''}\n")
    assert hyctas_main(["validate", "--config", str(config), "--ckpt_path", str(ckpt),
                        "--trainer.default_root_dir", str(tmp_path / f"v{calibration_images}"),
                        "--model.init_args.calibration_images", str(calibration_images)]) == 0
    rows = list(csv.DictReader((tmp_path / f"v{calibration_images}" / "metrics.csv").open()))
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


def test_hyctas_validate_of_a_supernet_recalibrates_like_the_search(supernet, tmp_path):
    module, data, ckpt = supernet
    few, more = validate_metrics(tmp_path, ckpt, 8), validate_metrics(tmp_path, ckpt, 40)
    names = [f"val/mIoU_{n}" for n in ("largest", "smallest", "random0", "random1", "random2")]
    assert all(n in few for n in names) and "val/mIoU_random" in few
    assert any(abs(few[n] - more[n]) > 1e-4 for n in names), (few, more)  # calibration data matters
    restored = SupernetModule.load_from_checkpoint(ckpt, val_random=3)
    for images, metrics in ((8, few), (40, more)):
        evaluator = SupernetEvaluator(restored.supernet, collect_images(data, "train", images, 0, False),
                                      collect_images(data, "val", None, 0, True),
                                      SearchConfig(latency_backend="cpu", latency_size=(32, 64), latency_warmup=1,
                                                   latency_runs=1))
        for name in ("smallest", "random2"):
            measured = evaluator(restored.val_archs[name]).values["miou"]
            assert measured == pytest.approx(metrics[f"val/mIoU_{name}"], abs=1e-5), (images, name)


def test_hyctas_rank_reports_estimates_and_tau_against_trained_references(supernet, tmp_path, capsys):
    module, data, ckpt = supernet
    out = tmp_path / "rank"
    assert hyctas_main(["rank", "--ckpt", str(ckpt), "--out", str(out), "--random_members", "3",
                        "--calibration_images", "16", "--device", "cpu", "--train", "true", "--recipe.steps", "3",
                        "--recipe.checkpoint_every", "3"]) == 0
    result = json.loads((out / "ranking.json").read_text())
    assert set(result["members"]) == {"largest", "smallest", "random0", "random1", "random2"}
    assert result["summary"]["n"] == 3 and "Kendall tau" in capsys.readouterr().out
    panel = ranking_panel(module.space, 3, 0)
    # the same estimates as the shared scorer gives; the references are the cache's results
    estimates = estimate_panel(module.supernet, panel, data, 8, calibration_images=16, seed=0)
    refs = load_references(next((out / "references").iterdir()))
    for name, member in result["members"].items():
        assert member["supernet_miou"] == pytest.approx(estimates[name], abs=1e-6), name
        assert member["standalone_miou"] == (refs[panel[name].hash] if name.startswith("random") else None)


def test_reference_key_follows_the_data_not_its_path(tmp_path):
    """The committed references of a study serve every machine: a data folder is known by what it holds."""
    def dataset(folder, images):
        (folder / "train").mkdir(parents=True)
        for i in range(images):
            (folder / "train" / f"{i}.png").write_bytes(b"x")
        (folder / "train.txt").write_text("train/0.png\n")
        return {"class_path": "hyctas_lightning.data.CamVidDataModule", "init_args": {"root": str(folder)}}

    recipe = StandaloneRecipe(steps=5)
    here = ReferenceCache(tmp_path / "out", recipe, dataset(tmp_path / "a" / "camvid", 3))
    copied = ReferenceCache(tmp_path / "out", recipe, dataset(tmp_path / "b" / "camvid", 3))
    other = ReferenceCache(tmp_path / "out", recipe, dataset(tmp_path / "c" / "camvid", 4))
    assert here.key == copied.key and here.key != other.key
    missing = {"class_path": "x", "init_args": {"root": str(tmp_path / "nowhere")}}
    assert ReferenceCache(tmp_path, recipe, missing).identity["data"]["init_args"]["root"] == str(tmp_path / "nowhere")


def test_finetuned_estimates_train_a_copy_of_each_member_and_leave_the_supernet_alone(supernet, tmp_path):
    module, data, ckpt = supernet
    before = {k: v.clone() for k, v in module.supernet.state_dict().items()}
    train = collect_images(data, "train", 16, 1, with_masks=True)
    calibration = collect_images(data, "train", 16, 0, with_masks=False)
    validation = collect_images(data, "val", None, 0, with_masks=True)
    arch = module.val_archs["random1"]
    scorer = FinetuneScorer(module.supernet, train, calibration, 8, finetune=Finetune(steps=3, lr=0.05, images=16))
    inherited = ChildNet.from_supernet(module.supernet, arch)
    trained = scorer.train(arch)
    moved = [n for n, p in trained.named_parameters() if not torch.equal(p, inherited.get_parameter(n))]
    assert moved and len(moved) > len(list(trained.parameters())) // 2  # trained, from the inherited weights
    first = scorer(arch, validation)
    assert 0 <= first <= 1 and scorer(arch, validation) == pytest.approx(first, abs=1e-6)  # the same every time
    assert all(torch.equal(v, before[k]) for k, v in module.supernet.state_dict().items())
    panel = {n: module.val_archs[n] for n in ("largest", "random1")}
    scores = estimate_panel(module.supernet, panel, data, 8, calibration_images=16, seed=0,
                            finetune=Finetune(steps=3, lr=0.05, images=16))
    assert set(scores) == set(panel) and scores["random1"] == pytest.approx(first, abs=1e-6)
    # the control: the same training from a fresh initialisation, the same one every time
    fresh = FinetuneScorer(module.supernet, train, calibration, 8,
                           finetune=Finetune(steps=3, lr=0.05, images=16, inherit=False))
    a, b = fresh.start(arch), fresh.start(arch)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, inherited.get_parameter(n)) for n, p in a.named_parameters())
    assert 0 <= fresh(arch, validation) <= 1
    out = tmp_path / "rank"  # the same estimate from the command line
    assert hyctas_main(["rank", "--ckpt", str(ckpt), "--out", str(out), "--random_members", "3",
                        "--calibration_images", "16", "--device", "cpu", "--finetune.steps", "3",
                        "--finetune.lr", "0.05", "--finetune.images", "16"]) == 0
    members = json.loads((out / "ranking.json").read_text())["members"]
    assert members["random1"]["supernet_miou"] == pytest.approx(first, abs=1e-6)
    with pytest.raises(ValueError, match="unknown settings"):
        finetune_from({"steps": 3, "epochs": 2})
    with pytest.raises(ValueError, match="steps >= 1"):
        Finetune(steps=0)
