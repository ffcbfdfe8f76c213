"""Multi-objective search: the engine on a cheap objective, resume, limits, outputs, and the supernet path."""
import json
import math
import os
import random
import signal
from dataclasses import dataclass

import lightning as L
import pytest
import torch

from hyctas_lightning.cli import main
from hyctas_lightning.data import SyntheticStreetDataModule
from hyctas_lightning.evaluation import count_params, profile_architecture
from hyctas_lightning.evaluation.batchnorm import bn_state, load_bn_state, recalibrate_bn
from hyctas_lightning.evaluation.bench import Variant, optimise
from hyctas_lightning.evaluation.weight_sharing import SubnetScorer
from hyctas_lightning.models import ChildNet
from hyctas_lightning.search import (
    Journal,
    Measurement,
    NothingFeasible,
    SearchCallback,
    SearchConfig,
    register_strategy,
    search_with,
)
from hyctas_lightning.search import evaluator as evaluator_module
from hyctas_lightning.search.evaluator import SupernetEvaluator, collect_images
from hyctas_lightning.search.profiles import ProfileAhead
from hyctas_lightning.search_space import SCALES, Architecture, SearchSpace, channels
from hyctas_lightning.training import SupernetModule

SPACE = SearchSpace(layers=6, fch=4)


def toy_measure(arch: Architecture) -> Measurement:
    """A cheap stand-in with a real trade-off: 'accuracy' saturates with capacity, 'latency' grows with it."""
    capacity, cost = 0.0, 0.0
    for b in arch.branches:
        for layer in range(arch.num_layers):
            if b.active(layer):
                stride = SCALES[b.scale_index(layer) + b.downs[layer]]
                c = channels(stride, 12, b.widths[layer])
                bonus = 1.5 if b.ops[layer] == "mesa" else 1.0
                capacity += bonus * c / stride
                cost += c * c / stride ** 2 * (2.0 if b.ops[layer].endswith("2x") else 1.0)
    capacity += 3.0 * arch.num_branches
    return Measurement({"miou": 1 - math.exp(-capacity / 300), "latency_ms": 1 + cost / 50}, {"toy": 0.0})


def run_toy(tmp_path, **kw):
    config = SearchConfig(**{**dict(population=12, generations=8, seed=3, latency_backend="cpu",
                                    reference=[0.0, 80.0]), **kw})
    return search_with(toy_measure, SPACE, config, Journal(tmp_path / "candidates.jsonl"), tmp_path,
                       show_progress=False)


def test_nsga2_improves_and_beats_random_at_equal_evaluations(tmp_path):
    space = SearchSpace(layers=8, fch=4)
    final = {"nsga2": [], "random": []}
    for seed in (0, 1):
        for strategy in final:
            config = SearchConfig(strategy=strategy, population=20, generations=20, seed=seed,
                                  latency_backend="cpu", reference=[0.0, 100.0])
            out = tmp_path / f"{strategy}{seed}"
            result = search_with(toy_measure, space, config, Journal(out / "candidates.jsonl"), out,
                                 show_progress=False)
            hv = [row["hypervolume"] for row in result.history]
            assert all(b >= a for a, b in zip(hv, hv[1:]))
            final[strategy].append((hv[-1], result.history[-1]["evaluations"]))
            if strategy == "nsga2":
                assert hv[-1] > hv[0] * 1.1
    assert [e for _, e in final["nsga2"]] == pytest.approx([e for _, e in final["random"]], rel=0.1)
    for (nsga_hv, _), (random_hv, _) in zip(final["nsga2"], final["random"]):
        assert nsga_hv > random_hv * 1.03


def test_pareto_json_is_non_dominated_and_topk_are_valid_architectures(tmp_path):
    result = run_toy(tmp_path, generations=3)
    cands = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    points = [(c["measurements"]["miou"], c["measurements"]["latency_ms"]) for c in cands if c["feasible"]]
    front = json.loads((tmp_path / "pareto.json").read_text())
    assert front and len(front) == len(result.front)
    for entry in front:
        m, lat = entry["measurements"]["miou"], entry["measurements"]["latency_ms"]
        assert not any(pm >= m and pl <= lat and (pm > m or pl < lat) for pm, pl in points)
    tops = sorted((tmp_path / "topk").glob("*.json"))
    assert len(tops) == min(5, len(front))
    for path in tops:
        assert Architecture.load(path).hash in {e["hash"] for e in front}
    best = max(front, key=lambda e: e["measurements"]["miou"])
    assert Architecture.load(tmp_path / "best.json").hash == best["hash"]
    assert (tmp_path / "pareto.png").stat().st_size > 5000
    assert len(json.loads((tmp_path / "history.json").read_text())) == 4


def test_every_candidate_is_journalled_with_generation_genes_and_objectives(tmp_path):
    run_toy(tmp_path, generations=2)
    rows = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    assert {r["generation"] for r in rows} == {0, 1, 2}
    for r in rows:
        assert Architecture.from_genes(r["genes"], SPACE).hash == r["hash"]
        assert set(r["measurements"]) >= {"miou", "latency_ms"}
    assert len({r["hash"] for r in rows}) == len(rows)  # duplicates removed by hash


class Killed(Exception):
    pass


def test_kill_and_resume_loses_and_repeats_nothing(tmp_path):
    full = run_toy(tmp_path / "full", generations=4)
    calls = []

    def dying(arch):
        if len(calls) == 30:
            raise Killed
        calls.append(arch.hash)
        return toy_measure(arch)

    config = SearchConfig(population=12, generations=4, seed=3, latency_backend="cpu", reference=[0.0, 80.0])
    out = tmp_path / "killed"
    with pytest.raises(Killed):
        search_with(dying, SPACE, config, Journal(out / "candidates.jsonl"), out, show_progress=False)
    with (out / "candidates.jsonl").open("a") as f:
        f.write('{"hash": "cut sho')  # a kill in the middle of a write
    assert (out / "pareto.json").exists()  # partial results are written even when interrupted
    again = []
    resumed = search_with(lambda a: again.append(a.hash) or toy_measure(a), SPACE, config,
                          Journal(out / "candidates.jsonl"), out, show_progress=False)
    assert not set(again) & set(calls)  # nothing recomputed
    assert len(calls) + len(again) == full.new_evaluations
    assert json.loads((out / "pareto.json").read_text()) == json.loads((tmp_path / "full" / "pareto.json").read_text())
    assert [r["hypervolume"] for r in resumed.history] == [r["hypervolume"] for r in full.history]


class Backwards:
    """Measures each batch last candidate first: results arrive out of order, as from several processes."""

    def __init__(self) -> None:
        self.batches = []

    def __call__(self, arch: Architecture) -> Measurement:
        return toy_measure(arch)

    def evaluate_batch(self, archs, on_result) -> None:
        self.batches.append(len(archs))
        for i in reversed(range(len(archs))):
            on_result(i, toy_measure(archs[i]))


def test_batches_measured_in_any_order_make_the_same_run(tmp_path):
    plain = run_toy(tmp_path / "plain", generations=3, latency_cap_ms=12.0)
    backwards = Backwards()
    config = SearchConfig(population=12, generations=3, seed=3, latency_backend="cpu", reference=[0.0, 80.0],
                          latency_cap_ms=12.0)
    out = tmp_path / "backwards"
    result = search_with(backwards, SPACE, config, Journal(out / "candidates.jsonl"), out, show_progress=False)
    assert backwards.batches[0] == 12 and len(backwards.batches) > 4  # a whole population at once, then refills
    assert sum(backwards.batches) == plain.new_evaluations == result.new_evaluations
    assert json.loads((out / "pareto.json").read_text()) == json.loads((tmp_path / "plain/pareto.json").read_text())
    assert [r["hypervolume"] for r in result.history] == [r["hypervolume"] for r in plain.history]


def test_latency_cap_and_minimum_miou_are_respected(tmp_path):
    result = run_toy(tmp_path, generations=2, latency_cap_ms=12.0, min_miou=0.12)
    rows = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    assert any(not r["feasible"] for r in rows)
    for r in rows:
        m = r["measurements"]
        assert r["feasible"] == (m["latency_ms"] <= 12.0 and m["miou"] >= 0.12)
    assert result.front and all(ind.candidate.measurements["latency_ms"] <= 12.0 for ind in result.front)


def test_impossible_latency_cap_stops_and_keeps_what_was_evaluated(tmp_path):
    with pytest.raises(NothingFeasible, match="no feasible architecture"):
        run_toy(tmp_path, latency_cap_ms=0.01)
    assert len((tmp_path / "candidates.jsonl").read_text().splitlines()) > 0
    assert json.loads((tmp_path / "pareto.json").read_text()) == []


@pytest.mark.parametrize("strategy", ["random", "local"])
def test_baselines_share_evaluator_and_outputs(tmp_path, strategy):
    result = run_toy(tmp_path, strategy=strategy, generations=2, local_seeds=2, local_iterations=3,
                     local_neighbours=3)
    assert result.front and (tmp_path / "pareto.json").exists() and list((tmp_path / "topk").glob("*.json"))


@dataclass
class GreedySettings:
    """Args:
        draws: architectures drawn per generation.
    """

    draws: int = 3


@register_strategy("greedy_test", settings=GreedySettings, overwrite=True)
def greedy(run):
    """A plugin strategy with its own setting, read from strategy_args."""
    seen = set()
    for generation in range(run.config.generations + 1):
        for _ in range(run.settings.draws):
            arch = run.sample()
            if arch.hash not in seen:
                seen.add(arch.hash)
                run.evaluate(arch, generation)
        run.record_generation(generation)


def test_a_strategy_gets_its_own_settings_from_strategy_args(tmp_path):
    result = run_toy(tmp_path, strategy="greedy_test", generations=1, strategy_args={"draws": 2})
    assert result.history[-1]["evaluations"] == 4  # 2 draws in each of 2 generations
    assert SearchConfig(strategy="greedy_test").to_dict()["strategy_args"] == {"draws": 3}  # recorded in full
    with pytest.raises(ValueError, match="strategy_args: \\['crossover_prob'\\] not settings of strategy "
                                         "'greedy_test'; its settings: draws"):
        SearchConfig(strategy="greedy_test", strategy_args={"crossover_prob": 0.5})
    with pytest.raises(ValueError, match="crossover_prob: in \\[0, 1\\], got 2"):
        SearchConfig(strategy_args={"crossover_prob": 2})


def test_older_flat_strategy_settings_still_load_and_journals_stay_valid():
    old = SearchConfig(strategy="local", local_seeds=2, local_iterations=3, crossover_prob=0.5)
    assert old.strategy_args == {"seeds": 2, "iterations": 3, "neighbours": 5} and old.local_seeds is None
    assert "local_seeds" not in old.to_dict()
    assert SearchConfig(crossover_prob=0.5).strategy_args == {"crossover_prob": 0.5, "mutation_rate": None}
    # what a journal is keyed by: the images and the latency protocol, never the algorithm or its termination
    assert set(old.measurement_settings()) == {"calibration_images", "val_images", "latency_backend", "latency_variant",
                                               "latency_size", "latency_warmup", "latency_runs", "seed"}
    assert SearchConfig(generations=3, strategy_args={"crossover_prob": 0.1}).measurement_settings() == \
        SearchConfig().measurement_settings()


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="strategy"):
        SearchConfig(strategy="annealing")
    with pytest.raises(ValueError, match="objectives: unknown \\['beauty'\\]; registered: miou"):
        SearchConfig(objectives=["miou", "beauty"])


def test_config_latency_variant_is_a_bench_variant():
    with pytest.raises(ValueError, match="latency_variant: variant 'fp8-fold'"):
        SearchConfig(latency_variant="fp8-fold")
    with pytest.raises(ValueError, match="needs latency_backend: cuda"):
        SearchConfig(latency_variant="fp16-fold-cl-graph", latency_backend="cpu")
    assert SearchConfig().latency_variant == "fp32"  # the paper's eager float32


# ---------------------------------------------------------------------------------- through a supernet
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("supernet")
    L.seed_everything(0)
    data = SyntheticStreetDataModule(train_samples=96, val_samples=16, size=(64, 128), batch_size=16)
    module = SupernetModule(SearchSpace(layers=5, fch=4), num_classes=8, val_random=1)
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    L.Trainer(max_epochs=6, default_root_dir=root, logger=False, enable_progress_bar=False, num_sanity_val_steps=0,
              enable_model_summary=False,
              callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=root, save_last=True)]).fit(module, data)
    return module, data, root / "last.ckpt"


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def fast_config(**kw):
    return SearchConfig(**{**dict(population=4, generations=1, calibration_images=32, val_images=16,
                                  latency_backend="cpu", latency_size=(64, 128), latency_warmup=1, latency_runs=2,
                                  top_k=2), **kw})


def test_bn_recalibration_gives_each_sub_network_its_own_statistics(trained):
    # training leaves one set of running statistics shared by every sub-network; recalibrated on one batch, a
    # sub-network in eval mode must compute what it computes in train mode on that batch (its own batch
    # statistics), up to the unbiased variance BN stores (stride-32 maps of this size hold few pixels per channel);
    # with the shared statistics it does not
    module, data, _ = trained
    supernet = module.supernet.eval()
    batch = collect_images(data, "train", 16, 0, False)[0]
    trained_state = bn_state(supernet)
    rng = random.Random(1)
    for arch in [supernet.space.smallest()] + [supernet.space.sample(rng) for _ in range(5)]:
        load_bn_state(supernet, trained_state)
        with torch.no_grad():
            stale = supernet(batch, arch)
            recalibrate_bn(supernet, lambda x, arch=arch: supernet(x, arch), [batch])
            fresh_state = bn_state(supernet)
            recalibrated = supernet(batch, arch)
            own = supernet.train()(batch, arch)
            supernet.eval()
        assert any(not torch.equal(trained_state[k], fresh_state[k]) for k in trained_state if "running_mean" in k)
        errors = relative_error(recalibrated, own), relative_error(stale, own)
        assert errors[0] < 0.05 and errors[1] > 4 * errors[0], (errors, arch)  # measured: 0.004-0.017, 0.23-0.68


def test_stacked_passes_give_the_batch_by_batch_statistics_and_scores(trained):
    # the scorer runs up to images_per_pass images at once; BN still takes each calibration batch's own statistics,
    # so statistics and scores match one batch at a time (uneven batch sizes and a lone last batch included)
    module, data, _ = trained
    supernet = module.supernet.eval()
    images = collect_images(data, "train", 64, 0, False)
    calibration = [images[0][:8], images[0][8:], images[1][:8], images[1][8:12], images[2]]
    validation = collect_images(data, "val", 16, 0, True)
    validation = [(x[i:i + 4], y[i:i + 4]) for x, y in validation for i in range(0, x.shape[0], 4)]
    saved = bn_state(supernet)
    for arch in [supernet.space.largest(), supernet.space.sample(random.Random(3))]:
        results = []
        for per_pass in (None, 32):
            scorer = SubnetScorer(supernet, calibration, 8, images_per_pass=per_pass)
            results.append((scorer(arch, scorer.passes(validation), restore=False), bn_state(supernet)))
            load_bn_state(supernet, saved)
        assert len(SubnetScorer(supernet, calibration, 8, images_per_pass=32).calibration) == 3  # 8+8+8, 4, 16
        (one, one_state), (stacked, stacked_state) = results
        assert abs(one - stacked) < 1e-6
        for k in one_state:
            assert torch.allclose(one_state[k].float(), stacked_state[k].float(), rtol=1e-4, atol=1e-5), k


def test_evaluator_times_candidates_in_the_configured_variant(trained, monkeypatch):
    module, data, _ = trained
    supernet = module.supernet.eval()
    seen, prepared = [], []

    def spy(net, variant, example, autotune, prepared=False):
        seen.append((variant.name, autotune, prepared))
        return real(net, variant, example, autotune, prepared=prepared)

    def spy_prepare(net, variant, device, inplace=False):
        prepared.append((variant.name, inplace))
        return real_prepare(net, variant, device, inplace)

    real, real_prepare = evaluator_module.optimise, evaluator_module.prepare_network
    monkeypatch.setattr(evaluator_module, "optimise", spy)
    monkeypatch.setattr(evaluator_module, "prepare_network", spy_prepare)
    evaluator = SupernetEvaluator(supernet, collect_images(data, "train", 16, 0, False),
                                  collect_images(data, "val", 16, 0, True),
                                  fast_config(latency_variant="bf16-fold-cl", latency_autotune=False))
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    arch = supernet.space.sample(random.Random(2))
    measured = evaluator(arch).values
    # the timed child is prepared in place (it is built for the timing alone), then timed as prepared
    assert prepared and set(prepared) == {("bf16-fold-cl", True)}
    assert seen and set(seen) == {("bf16-fold-cl", False, True)} and measured["latency_ms"] > 0
    # BN folding happened on the child: the shared weights are those training left (BN recalibrated only)
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items() if "running" not in k
               and "num_batches" not in k)


def test_profiles_counted_ahead_in_a_pool_leave_the_search_unchanged(trained, tmp_path, monkeypatch):
    # a latency from the structure alone, so that two searches are comparable record by record: with the profiles
    # counted ahead by a worker process the journal holds the same candidates with the same numbers, in order
    module, data, _ = trained
    supernet = module.supernet.eval()
    monkeypatch.setattr(SupernetEvaluator, "latency", lambda self, child, warmup, runs: count_params(child) / 1e4)
    calibration, validation = collect_images(data, "train", 32, 0, False), collect_images(data, "val", 16, 0, True)
    records, timings = {}, {}
    for workers in (0, 1):
        config = fast_config(profile_workers=workers)
        evaluator = SupernetEvaluator(supernet, calibration, validation, config)
        try:
            search_with(evaluator, supernet.space, config, Journal(tmp_path / f"{workers}" / "candidates.jsonl"),
                        tmp_path / f"{workers}", show_progress=False)
        finally:
            evaluator.close()
        found = Journal(tmp_path / f"{workers}" / "candidates.jsonl").candidates()
        records[workers] = [(c.hash, c.generation, c.feasible, c.measurements) for c in found]
        timings[workers] = [c.timing for c in found]
    assert len(records[0]) >= 8 and records[1] == records[0]
    assert all(set(t) == {"profile", "build", "latency", "recalibration", "validation"} for t in timings[1])


def state_latency(self, net, warmup, runs):
    """A stand-in latency that depends on every value of the timed network (weights, folded BN statistics)."""
    return 1.0 + sum(float(t.double().abs().sum()) for t in net.state_dict().values()) / 1e4


def test_children_built_ahead_leave_the_search_unchanged(trained, tmp_path, monkeypatch):
    # the next child is built while the current candidate is scored: on a CPU backend it holds the supernet's
    # weights and, folded in, the statistics the current candidate's recalibration left, as when built in its own
    # call; a latency computed from its values, the scores and the journal are the same record by record
    module, data, _ = trained
    supernet = module.supernet.eval()
    monkeypatch.setattr(SupernetEvaluator, "latency", state_latency)
    calibration, validation = collect_images(data, "train", 32, 0, False), collect_images(data, "val", 16, 0, True)
    records, timings = {}, {}
    for ahead in (None, True):  # None: the default, off on a CPU backend
        config = fast_config(build_ahead=ahead, latency_variant="fp32-fold")
        evaluator = SupernetEvaluator(supernet, calibration, validation, config)
        assert evaluator.build_ahead is bool(ahead)
        folder = tmp_path / str(ahead)
        search_with(evaluator, supernet.space, config, Journal(folder / "candidates.jsonl"), folder,
                    show_progress=False)
        found = Journal(folder / "candidates.jsonl").candidates()
        records[ahead] = [(c.hash, c.generation, c.feasible, c.measurements) for c in found]
        timings[ahead] = [c.timing for c in found]
    assert len(records[None]) >= 8 and records[True] == records[None]
    assert not any("build_hidden" in t for t in timings[None])
    built_ahead = [t for t in timings[True] if "build_hidden" in t]  # all but the first of each batch
    assert len(built_ahead) >= len(timings[True]) - 3
    assert all(t["build"] >= 0 and t["build_hidden"] >= 0 and t["recalibration"] > 0 for t in built_ahead)


def test_a_child_built_ahead_for_another_architecture_is_never_timed(trained, monkeypatch):
    module, data, _ = trained
    supernet = module.supernet.eval()
    timed = []
    monkeypatch.setattr(SupernetEvaluator, "latency", lambda self, net, warmup, runs: timed.append(net) or 1.0)
    evaluator = SupernetEvaluator(supernet, collect_images(data, "train", 16, 0, False),
                                  collect_images(data, "val", 16, 0, True), fast_config(build_ahead=True))
    rng = random.Random(5)
    a, b, c = (supernet.space.sample(rng) for _ in range(3))
    evaluator.prefetch([a, b])
    evaluator(a)
    assert evaluator._ahead is not None and evaluator._ahead.hash == b.hash  # b's child, built while a was scored
    surprise = evaluator(c)  # not the announced b: b's child is dropped, c's built in its own call
    assert "build_hidden" not in surprise.timing and evaluator._ahead is None
    expected = evaluator.prepared_child(c)
    assert {k: v.shape for k, v in timed[-1].state_dict().items()} == {
        k: v.shape for k, v in expected.state_dict().items()}
    assert evaluator(b).values["miou"] is not None and evaluator._ahead is None  # b, built in its own call


def test_a_candidate_over_the_cap_is_not_scored_with_or_without_a_build_ahead(trained, monkeypatch):
    module, data, _ = trained
    supernet = module.supernet.eval()
    monkeypatch.setattr(SupernetEvaluator, "latency", lambda self, net, warmup, runs: count_params(net) / 1e4)
    rng = random.Random(6)
    archs = [supernet.space.sample(rng) for _ in range(5)]
    latencies = sorted(count_params(ChildNet.from_supernet(supernet, arch)) / 1e4 for arch in archs)
    cap = (latencies[1] + latencies[2]) / 2  # two candidates under the cap, three over it
    calibration, validation = collect_images(data, "train", 16, 0, False), collect_images(data, "val", 16, 0, True)
    results = {}
    for ahead in (False, True):
        evaluator = SupernetEvaluator(supernet, calibration, validation,
                                      fast_config(build_ahead=ahead, latency_cap_ms=cap))
        calibrated = []
        monkeypatch.setattr(evaluator.scorer, "calibrate", lambda arch, real=evaluator.scorer.calibrate,
                            seen=calibrated: seen.append(arch.hash) or real(arch))
        evaluator.prefetch(archs)
        measured = [evaluator(arch) for arch in archs]
        results[ahead] = [m.values for m in measured]
        over = [arch.hash for arch, v in zip(archs, results[ahead]) if v["latency_ms"] > cap]
        assert len(over) == 3 and not set(over) & set(calibrated) and len(calibrated) == 2
        assert all((v["miou"] is None) == (arch.hash in over) for arch, v in zip(archs, results[ahead]))
        # a child is built ahead only while a candidate is scored: after one over the cap it is built in its call
        after_scored = [arch.hash not in over for arch in archs[:-1]]
        assert ["build_hidden" in m.timing for m in measured[1:]] == [ahead and scored for scored in after_scored]
    assert results[True] == results[False]


def test_profile_ahead_gives_the_inline_profiles(caplog):
    space = SearchSpace(layers=4, fch=4)
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(4)]
    ahead = ProfileAhead((64, 128), 5, fch=4, stem_head_width=space.stem_head_width, workers=1)
    try:
        ahead.prefetch(archs[:2])
        ahead.prefetch(archs[1:3])  # a new batch: the first one's uncollected profile is dropped
        inline = [profile_architecture(arch, (64, 128), 5, fch=4, output_stride=8,
                                       stem_head_width=space.stem_head_width) for arch in archs]
        assert [ahead(arch) for arch in archs] == inline  # counted ahead (1, 2) or, not announced or dropped, here
        for pid in list(ahead._pool._processes):  # a worker killed (out of memory, say): the pool is broken
            os.kill(pid, signal.SIGKILL)
        ahead._pool._processes[pid].join()
        ahead.prefetch(archs)  # a new pool for the next batch (or, had it not noticed yet, counted here)
        assert [ahead(arch) for arch in archs] == inline
        assert "the profile pool broke" in caplog.text
    finally:
        ahead.close()
    with pytest.raises(ValueError, match="profile workers"):
        ProfileAhead((64, 128), 5, fch=4, stem_head_width=1.0, workers=-1)
    with pytest.raises(ValueError, match="profile_workers"):
        SearchConfig(profile_workers=-1)


def test_latency_child_without_weights_has_the_copied_childs_structure(trained):
    # on a GPU the child is timed with placeholder constants instead of the supernet's weights: the same modules,
    # shapes and dtypes, finite through folding and a half-precision cast whatever the uninitialised memory held
    module, data, _ = trained
    supernet = module.supernet.eval()
    rng = random.Random(4)
    variant = Variant.parse("bf16-fold-cl")
    example = torch.randn(1, 3, 64, 128)
    for arch in [supernet.space.largest(), *(supernet.space.sample(rng) for _ in range(3))]:
        copied, bare = ChildNet.from_supernet(supernet, arch), ChildNet.from_supernet(supernet, arch, weights=False)
        assert [(n, type(m)) for n, m in bare.named_modules()] == [(n, type(m)) for n, m in copied.named_modules()]
        assert {k: (v.shape, v.dtype) for k, v in bare.state_dict().items()} == {
            k: (v.shape, v.dtype) for k, v in copied.state_dict().items()}
        garbage = ChildNet.empty(arch, supernet.num_classes, "cpu", fch=supernet.fch, output_stride=8,
                                 stem_head_width=supernet.space.stem_head_width)
        with torch.no_grad():
            for t in [*garbage.parameters(), *garbage.buffers()]:
                t.fill_(float("nan") if t.is_floating_point() else -1)
        runners = [optimise(net, variant, example) for net in (copied, garbage.placeholder_())]
        assert [type(m) for m in runners[1].modules()] == [type(m) for m in runners[0].modules()]
        with torch.no_grad():
            outputs = [runner(example) for runner in runners]
        assert outputs[1].shape == outputs[0].shape and torch.isfinite(outputs[1]).all()
    # a CPU backend times the child with the supernet's weights (a CPU's speed depends on values)
    evaluator = SupernetEvaluator(supernet, collect_images(data, "train", 16, 0, False),
                                  collect_images(data, "val", 16, 0, True), fast_config())
    timed, copied = evaluator.timed_child(arch), ChildNet.from_supernet(supernet, arch)
    assert all(torch.equal(v, copied.state_dict()[k]) for k, v in timed.state_dict().items())


def test_search_cli_on_a_supernet_checkpoint(trained, tmp_path, capsys):
    _, _, ckpt = trained
    config = tmp_path / "search.yaml"
    config.write_text("search:\n  population: 4\n  generations: 1\n  calibration_images: 32\n  val_images: 16\n"
                      "  latency_backend: cpu\n  latency_size: [64, 128]\n  latency_warmup: 1\n  latency_runs: 2\n")
    out = tmp_path / "run"
    assert main(["search", "--ckpt", str(ckpt), "--config", str(config), "--out", str(out)]) == 0
    assert "non-dominated" in capsys.readouterr().out
    n = len((out / "candidates.jsonl").read_text().splitlines())
    assert main(["search", "--ckpt", str(ckpt), "--config", str(config), "--out", str(out)]) == 0
    assert len((out / "candidates.jsonl").read_text().splitlines()) == n  # rerun: all from the journal
    assert main(["search", "--ckpt", str(ckpt), "--config", str(config), "--out", str(tmp_path / "none"),
                        "--search.latency_cap_ms", "0.001"]) == 3
    assert "no feasible architecture" in capsys.readouterr().err


def test_search_cli_rejects_wrong_checkpoints_and_spaces(trained, tmp_path, capsys):
    _, _, ckpt = trained
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, other)
    assert main(["search", "--ckpt", str(other)]) == 4
    assert "other.ckpt is not a hyctas checkpoint" in capsys.readouterr().err
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    assert main(["search", "--ckpt", str(garbage)]) == 4
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err
    assert main(["search", "--ckpt", str(ckpt), "--space", '{"layers": 8}']) == 2
    assert "search space differs from the checkpoint's (layers: config 8 vs checkpoint 5)" in capsys.readouterr().err


def test_search_callback_runs_after_fit(tmp_path):
    data = SyntheticStreetDataModule(train_samples=32, val_samples=8, size=(64, 128), batch_size=16)
    module = SupernetModule(SearchSpace(layers=4, fch=4), num_classes=8, val_random=1)
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.05)
    callback = SearchCallback(fast_config(calibration_images=16, val_images=8), out_dir=str(tmp_path / "search"))
    L.Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
              enable_checkpointing=False, callbacks=[callback]).fit(module, data)
    assert callback.result.front and (tmp_path / "search" / "pareto.json").exists()


def test_checkpoint_data_spec_with_nested_transforms_rebuilds_the_datamodule():
    from hyctas_lightning.data import build_datamodule

    spec = {"class_path": "hyctas_lightning.data.SyntheticStreetDataModule",
            "init_args": {"train_samples": 4, "val_samples": 2, "size": [32, 64], "_private": 1,
                          "transforms": {"crop_size": [32, 32], "scale_range": [0.5, 2.0]}}}
    dm = build_datamodule(spec)
    assert dm.transforms.crop_size == (32, 32) and dm.transforms.scale_range == (0.5, 2.0)


def test_latency_autotune_off_is_a_new_measurement_protocol_and_on_keeps_old_journals():
    on, off = SearchConfig(), SearchConfig(latency_autotune=False)
    assert "latency_autotune" not in on.measurement_settings()
    assert off.measurement_settings() == {**on.measurement_settings(), "latency_autotune": False}
