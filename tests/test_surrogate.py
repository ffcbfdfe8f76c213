"""The surrogate fallback: ridge regression of standalone mIoU on the supernet estimate and costs, its leave-one-out
Kendall tau, and the ``surrogate_miou`` search objective, selected from YAML and used by ``hyctas search``."""
import json
import math
import random

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from hyctas_lightning.cli import main
from hyctas_lightning.data import SyntheticStreetDataModule
from hyctas_lightning.ranking import fit_surrogate, kendall_tau, loo_predictions
from hyctas_lightning.ranking.surrogate import feature_vector, profile_features
from hyctas_lightning.search import SearchConfig
from hyctas_lightning.search.objectives import SurrogateMiou
from hyctas_lightning.search_space import Architecture, SearchSpace, ranking_panel
from hyctas_lightning.training import SupernetModule

FEATURES = ("estimate", "macs", "params")


def synthetic(n: int, seed: int, noise: float = 0.01):
    """Measurements of n made-up architectures and a standalone mIoU that grows with size and with the estimate."""
    rng = np.random.default_rng(seed)
    macs, params, estimate = rng.uniform(0.5, 20, n), rng.uniform(1, 50, n), rng.uniform(0.1, 0.4, n)
    truth = 0.3 + 0.05 * np.log(macs) + 0.3 * estimate + rng.normal(0, noise, n)
    rows = [{"miou": float(e), "macs_g": float(m), "params_m": float(p), "latency_ms": None}
            for e, m, p in zip(estimate, macs, params)]
    return rows, truth.tolist()


def brute_force_loo(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Leave-one-out by hand: for each row, standardise and fit ridge on the others, then predict it."""
    out = []
    for i in range(len(y)):
        xs, ys = np.delete(x, i, 0), np.delete(y, i)
        mu, sd = xs.mean(0), xs.std(0)
        z = (xs - mu) / sd
        beta = np.linalg.inv(z.T @ z + alpha * np.eye(z.shape[1])) @ z.T @ (ys - ys.mean())
        out.append(ys.mean() + ((x[i] - mu) / sd) @ beta)
    return np.array(out)


def test_leave_one_out_tau_ranks_predictions_of_models_that_never_saw_the_row():
    rows, truth = synthetic(14, seed=0, noise=0.05)
    x = np.array([feature_vector(r, FEATURES) for r in rows])
    y = np.array(truth)
    expected = brute_force_loo(x, y, alpha=2.0)
    assert np.allclose(loo_predictions(x, y, alpha=2.0), expected)
    surrogate = fit_surrogate(rows, truth, FEATURES, alpha=2.0)
    assert surrogate.n == 14 and surrogate.loo_tau == pytest.approx(kendall_tau(expected.tolist(), truth))
    some = [0, 3, 5, 8, 11]
    assert fit_surrogate(rows, truth, FEATURES, alpha=2.0, loo_rows=some).loo_tau == pytest.approx(
        kendall_tau(expected[some].tolist(), y[some].tolist()))
    # without noise and with a tiny penalty every held-out row is predicted in the right order
    exact, exact_truth = synthetic(14, seed=1, noise=0.0)
    assert fit_surrogate(exact, exact_truth, FEATURES, alpha=1e-6).loo_tau == pytest.approx(1.0)
    # a target unrelated to the features: held-out predictions rank nothing
    shuffled = list(np.random.default_rng(2).permutation(truth))
    assert fit_surrogate(rows, shuffled, FEATURES).loo_tau < 0.4


def test_a_surrogate_ranks_a_held_out_set_better_than_the_estimate_alone():
    rows, truth = synthetic(60, seed=3, noise=0.02)
    surrogate = fit_surrogate(rows[:20], truth[:20], FEATURES)
    predicted = [surrogate.predict(r) for r in rows[20:]]
    tau = kendall_tau(predicted, truth[20:])
    assert tau > 0.7 and tau > kendall_tau([r["miou"] for r in rows[20:]], truth[20:]) + 0.2
    assert surrogate.predict({"miou": 0.2, "macs_g": None, "params_m": 3.0}) is None  # a cost unmeasured
    assert json.loads(json.dumps(surrogate.to_dict()))["features"] == list(FEATURES)


def test_surrogate_inputs_are_checked():
    rows, truth = synthetic(10, seed=0)
    with pytest.raises(ValueError, match="surrogate features: choose from"):
        fit_surrogate(rows, truth, ("estimate", "depth"))
    with pytest.raises(ValueError, match=r"lack a measurement of \['estimate', 'latency'\]"):
        fit_surrogate(rows, truth, ("estimate", "latency"))
    with pytest.raises(ValueError, match="at least 5 of them for 3 features"):
        fit_surrogate(rows[:4], truth[:4], FEATURES)


SPACE = SearchSpace(layers=4, fch=4)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """A reference folder (HASH.json with miou and arch, as ReferenceCache writes) and a study's estimates.json of
    the same architectures: made-up numbers where the standalone mIoU follows the estimate and the size."""
    root = tmp_path_factory.mktemp("surrogate")
    panel = ranking_panel(SPACE, 10, seed=0)
    rng = random.Random(0)
    scores = {n: rng.uniform(0.1, 0.4) for n in panel}
    (root / "refs").mkdir()
    for name, arch in panel.items():
        miou = 0.2 + scores[name] + 0.02 * math.log(profile_features(arch)["macs_g"])
        (root / "refs" / f"{arch.hash}.json").write_text(json.dumps({"miou": miou, "arch": arch.to_dict()}))
    (root / "estimates.json").write_text(json.dumps({"scores": scores, "panel": {n: a.to_dict()
                                                                                 for n, a in panel.items()}}))
    return root, panel, scores


def test_the_surrogate_objective_is_selected_and_set_from_the_search_config(references):
    root, panel, scores = references
    config = SearchConfig(objectives=["surrogate_miou", "latency_ms"], latency_backend="cpu",
                          objective_args={"surrogate_miou": {"references": str(root / "refs"),
                                                             "estimates": str(root / "estimates.json")}})
    objective, latency = config.objective_list()
    assert (objective.name, objective.direction, latency.name) == ("surrogate_miou", 1, "latency_ms")
    assert config.objective_list() is config.objective_list()  # fitted once per config
    surrogate = objective.compute.surrogate
    rows = [{"miou": scores[n], **profile_features(a)} for n, a in sorted(panel.items(), key=lambda x: x[1].hash)]
    targets = [json.loads((root / "refs" / f"{a.hash}.json").read_text())["miou"]
               for _, a in sorted(panel.items(), key=lambda x: x[1].hash)]
    assert surrogate.n == len(panel) and surrogate.coef == fit_surrogate(rows, targets).coef
    arch = SPACE.sample(random.Random(5))
    measured = {"miou": 0.3, "latency_ms": 4.0, "macs_g": 123.0}  # the evaluator's own MACs are not the features
    assert objective.value(arch, measured) == pytest.approx(surrogate.predict({"miou": 0.3, **profile_features(arch)}))
    assert objective.value(arch, {"miou": None, "latency_ms": 4.0}) is None  # over the latency cap: no estimate
    # two seeds' folders: their mean is the target
    assert config.to_dict()["objective_args"]["surrogate_miou"]["references"] == str(root / "refs")


def test_the_surrogate_objective_refuses_missing_or_stray_settings(references, tmp_path):
    root, _, _ = references
    with pytest.raises(ValueError, match="objective_args.surrogate_miou: the objective 'surrogate_miou' needs"):
        SearchConfig(objectives=["surrogate_miou", "latency_ms"]).objective_list()
    with pytest.raises(ValueError, match=r"objective_args: \['miou'\] not among the objectives"):
        SearchConfig(objectives=["surrogate_miou", "latency_ms"], objective_args={"miou": {}})
    with pytest.raises(ValueError, match="objective_args.latency_ms: the objective 'latency_ms' takes no settings"):
        SearchConfig(objective_args={"latency_ms": {"x": 1}}).objective_list()
    with pytest.raises(ValueError, match="objective_args.surrogate_miou: .*unexpected keyword argument 'refs'"):
        SearchConfig(objectives=["surrogate_miou", "latency_ms"],
                     objective_args={"surrogate_miou": {"refs": "x", "estimates": "y"}}).objective_list()
    with pytest.raises(FileNotFoundError, match="references: .*nowhere is no folder"):
        SearchConfig(objectives=["surrogate_miou", "latency_ms"], objective_args={"surrogate_miou": {
            "references": str(tmp_path / "nowhere"), "estimates": str(root / "estimates.json")}}).objective_list()
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="other.json: not a source of supernet estimates"):
        SearchConfig(objectives=["surrogate_miou", "latency_ms"], objective_args={"surrogate_miou": {
            "references": str(root / "refs"), "estimates": str(tmp_path / "other.json")}}).objective_list()


@pytest.fixture(scope="module")
def supernet_ckpt(tmp_path_factory):
    """A supernet of SPACE trained two steps, as ``hyctas search`` loads it."""
    root = tmp_path_factory.mktemp("supernet")
    L.seed_everything(0)
    module = SupernetModule(SPACE, num_classes=8, sampling="single", val_random=0)
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.05)
    trainer = L.Trainer(max_steps=2, default_root_dir=root, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, SyntheticStreetDataModule(train_samples=8, val_samples=8, size=(32, 64), batch_size=4))
    trainer.save_checkpoint(root / "supernet.ckpt")
    return root / "supernet.ckpt"


def search_yaml(path, surrogate_args) -> None:
    path.write_text(yaml.safe_dump({"search": {
        "objectives": ["surrogate_miou", "latency_ms"], "objective_args": {"surrogate_miou": surrogate_args},
        "population": 4, "generations": 1, "calibration_images": 8, "val_images": 8, "latency_backend": "cpu",
        "latency_size": [32, 64], "latency_warmup": 1, "latency_runs": 1}}))


def test_hyctas_search_ranks_candidates_by_the_surrogate(references, supernet_ckpt, tmp_path):
    root, _, _ = references
    config = tmp_path / "search.yaml"
    search_yaml(config, {"references": [str(root / "refs")], "estimates": [str(root / "estimates.json")]})
    out = tmp_path / "search"
    assert main(["search", "--ckpt", str(supernet_ckpt), "--config", str(config), "--out", str(out)]) == 0
    front = json.loads((out / "pareto.json").read_text())
    objective = SearchConfig(**yaml.safe_load(config.read_text())["search"]).objective_list()[0]
    assert isinstance(objective.compute, SurrogateMiou)
    journal = {c["hash"]: c for c in map(json.loads, (out / "candidates.jsonl").read_text().splitlines())}
    for entry in front:
        measured = journal[entry["hash"]]
        expected = objective.value(Architecture.from_dict(measured["arch"]), measured["measurements"])
        assert entry["objectives"]["surrogate_miou"] == pytest.approx(expected)


def test_hyctas_search_refuses_a_surrogate_without_references_before_any_work(references, supernet_ckpt, tmp_path,
                                                                             capsys):
    root, _, _ = references
    config, out = tmp_path / "search.yaml", tmp_path / "search"
    search_yaml(config, {"references": str(tmp_path / "nowhere"), "estimates": str(root / "estimates.json")})
    assert main(["search", "--ckpt", str(supernet_ckpt), "--config", str(config), "--out", str(out)]) == 10
    assert "nowhere is no folder" in capsys.readouterr().err
    search_yaml(config, {"references": str(root / "refs"), "estimates": str(root / "estimates.json"), "alpa": 1})
    assert main(["search", "--ckpt", str(supernet_ckpt), "--config", str(config), "--out", str(out)]) == 2
    assert "unexpected keyword argument 'alpa'" in capsys.readouterr().err
    assert not out.exists()  # refused before the journal, the config or any image
