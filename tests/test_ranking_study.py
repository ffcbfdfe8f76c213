"""The ranking study: its report (the acceptance's format) from fake study results, the default chosen by a written
rule, the baselines, tau within each branch count; the scheduling of split parts after the variant they start from,
resumed from committed results alone; the CamVid study configs; and a tiny study run end to end."""
import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from helpers import ROOT, load_benchmark
from hyctas_lightning.cli import main as hyctas_main
from hyctas_lightning.fileio import write_json
from hyctas_lightning.ranking import read_rank_study
from hyctas_lightning.ranking.correlation import kendall_tau
from hyctas_lightning.ranking.report import DefaultRule, ablation_means, report_markdown, study_report
from hyctas_lightning.ranking.surrogate import profile_features
from hyctas_lightning.search_space import ABLATIONS, SearchSpace, ablation_panel, ranking_panel
from hyctas_lightning.training import SPLITS

bench = load_benchmark("supernet_ranking")
SPACE = {"layers": 4, "fch": 4, "head_sharing": "combination"}
ACCEPTANCE = {"tau", "tau_ci", "spearman", "random_mean", "largest", "smallest", "n"}


def fake_results():
    """A panel of 9 random members, standalone results, and three variants: one ranking well but with low
    estimates, one ranking well with usable estimates, one ranking backwards."""
    panel = ranking_panel(SearchSpace(**SPACE), 9, seed=0)
    names = list(panel)
    references = {n: 0.30 + 0.02 * i for i, n in enumerate(names)}
    good = {n: v + 0.1 + (0.03 if n == "random4" else 0.0) for n, v in references.items()}
    estimates = {"low": {n: v - 0.25 for n, v in references.items()}, "good": good,
                 "backwards": {n: 1 - v for n, v in references.items()}}
    costs = {n: profile_features(a) for n, a in panel.items()}
    return panel, estimates, references, costs


def test_the_report_has_the_acceptance_format_and_its_numbers_come_from_the_pairs():
    panel, estimates, references, costs = fake_results()
    report = study_report(panel, estimates, references, costs, DefaultRule(min_random_mean=0.35, min_tau=0.5),
                          {"good": ["--trainer.max_steps", "10"]}, device="test")
    randoms = [n for n in panel if n.startswith("random")]
    for name, entry in report["variants"].items():
        assert ACCEPTANCE <= set(entry) and entry["n"] == 9 and len(entry["tau_ci"]) == 2
        expected = kendall_tau([estimates[name][n] for n in randoms], [references[n] for n in randoms])
        assert entry["tau"] == pytest.approx(expected)
        assert entry["tau_ci"][0] <= entry["tau"] <= entry["tau_ci"][1]
        assert entry["random_mean"] == pytest.approx(sum(estimates[name][n] for n in randoms) / 9)
        assert entry["largest"] == estimates[name]["largest"] and entry["smallest"] == estimates[name]["smallest"]
        for k in (1, 2, 3):
            group = [n for n in randoms if panel[n].num_branches == k]
            assert entry["tau_by_branches"][str(k)] == pytest.approx(
                kendall_tau([estimates[name][n] for n in group], [references[n] for n in group]))
    assert report["variants"]["backwards"]["tau"] == pytest.approx(-1.0)
    assert report["variants"]["good"]["overrides"] == ["--trainer.max_steps", "10"]
    for cost, key in (("macs", "macs_g"), ("params", "params_m")):
        assert report["baselines"][cost] == pytest.approx(
            kendall_tau([costs[n][key] for n in randoms], [references[n] for n in randoms]))
    # "low" ranks perfectly but its estimates are unusable: the rule takes "good" (random mean >= 0.35)
    assert report["variants"]["low"]["tau"] == pytest.approx(1.0)
    assert report["variants"]["good"]["tau"] < 1.0
    assert report["default"] == "good" and report["weight_sharing_ranks"]
    assert report["verdict"].startswith("weight sharing ranks: good")
    assert json.loads(json.dumps(report)) == report  # plain JSON
    table = report_markdown(report)
    assert "| **good** |" in table and "| macs |" in table and "Default (highest tau among variants with random " \
        "mean >= 35): **good**" in table


def test_the_rule_says_plainly_when_weight_sharing_did_not_rank():
    panel, estimates, references, costs = fake_results()
    two = {"backwards": estimates["backwards"], "low": estimates["low"]}
    # eligible by the random mean first: "backwards" (mean 0.6, tau -1) over "low" (mean 0.2, tau 1)
    report = study_report(panel, two, references, costs, DefaultRule(min_random_mean=0.35))
    assert report["default"] == "backwards" and not report["weight_sharing_ranks"]
    # no variant reaches the random mean: the highest tau of all is the default, and the verdict says it fails
    report = study_report(panel, two, references, costs, DefaultRule(min_random_mean=0.9))
    assert report["default"] == "low" and not report["weight_sharing_ranks"]
    assert report["verdict"].startswith("weight sharing alone did not rank")
    assert "surrogate_miou" in report["verdict"]
    empty = study_report(panel, {}, references, costs)
    assert empty["default"] is None and empty["variants"] == {} and "no variant" in empty["verdict"]


def test_ablations_swap_one_choice_of_each_random_member_with_the_largest_and_average_per_kind():
    space = SearchSpace(layers=6, fch=4)
    panel, largest = ranking_panel(space, 4, seed=0), space.largest()
    ablated = ablation_panel(panel, largest)
    assert set(ablated) == {f"random{i}:{k}" for i in range(4) for k in ABLATIONS}
    top = largest.branches[0]
    for name in (n for n in panel if n.startswith("random")):
        member = panel[name]
        uniform, widths = ablated[f"{name}:genes_largest"], ablated[f"{name}:widths_full"]
        for mine, new, wide in zip(member.branches, uniform.branches, widths.branches):
            assert (new.downs, new.nodes) == (mine.downs, mine.nodes)  # the member's topology stays
            assert new.ops == top.ops and new.widths == top.widths
            assert wide.ops == mine.ops and wide.widths == top.widths
        given = ablated[f"{name}:largest_ops"]
        assert given.num_branches == largest.num_branches and given.branches[0].ops == member.branches[0].ops
        assert given.branches[0].widths == top.widths
        assert all(a.validate() for a in (uniform, widths, given))
    means = ablation_means({"random0:ops_largest": 0.2, "random1:ops_largest": 0.4, "random0:widths_full": 0.1},
                           {"random0": 0.3, "random1": 0.5, "largest": 0.9})
    assert means == pytest.approx({"members": 0.4, "ops_largest": 0.3, "widths_full": 0.1})


def write_study(tmp_path, variants, panel=3, seeds=(0,), steps=4, ablations=False):
    supernet = tmp_path / "supernet.yaml"
    supernet.write_text(yaml.safe_dump({
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "max_steps": steps, "max_epochs": -1, "check_val_every_n_epoch": 1000,
                    "num_sanity_val_steps": 0, "enable_progress_bar": False, "enable_model_summary": False,
                    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                               "init_args": {"save_dir": str(tmp_path), "name": "", "version": ""}},
                    "callbacks": [{"class_path": "hyctas_lightning.training.Deadline"}]},
        "model": {"class_path": "hyctas_lightning.training.SupernetModule",
                  "init_args": {"space": SPACE, "num_random": 1, "val_random": 0, "calibration_images": 8}},
        "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.05, "momentum": 0.9}}}))
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({
        "supernet_config": str(supernet),
        "data": {"class_path": "hyctas_lightning.data.SyntheticStreetDataModule",
                 "init_args": {"train_samples": 16, "val_samples": 8, "size": [32, 64], "batch_size": 8}},
        "panel": {"random_members": panel, "seed": 0}, "estimates": {"calibration_images": 8},
        "recipe": {"steps": 2, "checkpoint_every": 2}, "reference_seeds": list(seeds),
        "default_rule": {"min_random_mean": 0.0}, "variants": variants, "ablations": ablations}))
    return study


SPLIT_STUDY = {"single": ["--model.init_args.sampling", "single", "--trainer.max_steps", "6"],
               "sandwich": [],
               "split_branches": {"split": {"key": "branches", "from": "single", "num_random": 1},
                                  "overrides": ["--trainer.max_steps", "2"]}}


def finish(folder, steps):
    """A run folder as a finished `hyctas fit` leaves it (config and a last.ckpt at max_steps)."""
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"trainer": {"max_steps": steps}}))
    torch.save({"global_step": steps}, folder / "checkpoints" / "last.ckpt")


def test_split_parts_start_after_their_base_and_a_fresh_machine_resumes_from_the_results(tmp_path):
    study_yaml = write_study(tmp_path, SPLIT_STUDY)
    out, work = tmp_path / "out", tmp_path / "work"
    study = bench.Study(bench.parse(["--study", str(study_yaml), "--out", str(out), "--work", str(work)]))
    assert [j[0] for j in study.supernet_jobs()] == ["supernet single", "supernet sandwich"]  # the longest first
    finish(work / "variants" / "single", 6)
    jobs = {j[0]: j[1] for j in study.supernet_jobs()}
    assert set(jobs) == {"supernet sandwich"} | {f"supernet split_branches part {p}" for p in (1, 2, 3)}
    argv = jobs["supernet split_branches part 2"]
    base = str(work / "variants" / "single" / "checkpoints" / "last.ckpt")
    assert argv[argv.index("--model.init_args.sampling") + 1] == "split"
    assert yaml.safe_load(argv[argv.index("--model.init_args.sampler_args") + 1]) == {
        "key": "branches", "part": 2, "num_random": 1}
    assert argv[argv.index("--trainer.callbacks+=hyctas_lightning.training.WarmStart") + 2] == base
    assert argv[argv.index("--trainer.default_root_dir") + 1] == str(work / "variants" / "split_branches" / "parts"
                                                                       / "2")
    assert study.max_steps(argv) == 2
    # a fresh machine: the work folder is gone, the committed results are there. Finished units are not redone,
    # but the base of a split still unfinished must be trained again to start its parts from
    for name in ("single", "sandwich"):
        (out / "variants" / name).mkdir(parents=True)
        (out / "variants" / name / "estimates.json").write_text("{}")
    (work / "variants" / "single" / "checkpoints" / "last.ckpt").unlink()
    assert [j[0] for j in study.supernet_jobs()] == ["supernet single"]
    for part in (1, 2, 3):
        (out / "variants" / "split_branches" / "parts" / str(part)).mkdir(parents=True)
        (out / "variants" / "split_branches" / "parts" / str(part) / "estimates.json").write_text("{}")
    assert study.supernet_jobs() == [] and all(study.trained(n) for n in study.variants())
    assert bench.Study(bench.parse(["--study", str(study_yaml), "--variants", "split_branches", "--out",
                                    str(out)])).variants() == ["single", "split_branches"]


def test_an_estimate_variant_trains_nothing_and_waits_for_the_supernet_it_estimates_through(tmp_path):
    variants = {"sandwich": [], "sandwich_ft": {"estimate": {"from": "sandwich", "finetune": {"steps": 2}}}}
    study_yaml = write_study(tmp_path, variants)
    out, work = tmp_path / "out", tmp_path / "work"
    study = bench.Study(bench.parse(["--study", str(study_yaml), "--out", str(out), "--work", str(work)]))
    assert [j[0] for j in study.supernet_jobs()] == ["supernet sandwich"] and not study.trained("sandwich_ft")
    assert bench.Study(bench.parse(["--study", str(study_yaml), "--variants", "sandwich_ft", "--out",
                                    str(out)])).variants() == ["sandwich", "sandwich_ft"]
    finish(work / "variants" / "sandwich", 4)
    assert study.supernet_jobs() == [] and study.trained("sandwich_ft")
    # a fresh machine: the base's estimates are committed, the fine-tuned ones are not, so the base trains again
    (out / "variants" / "sandwich").mkdir(parents=True)
    (out / "variants" / "sandwich" / "estimates.json").write_text("{}")
    (work / "variants" / "sandwich" / "checkpoints" / "last.ckpt").unlink()
    assert [j[0] for j in study.supernet_jobs()] == ["supernet sandwich"]
    (out / "variants" / "sandwich_ft").mkdir(parents=True)
    (out / "variants" / "sandwich_ft" / "estimates.json").write_text("{}")
    assert study.supernet_jobs() == [] and study.trained("sandwich_ft")


def test_a_finished_variant_is_estimated_before_the_next_pool_of_trainings_and_ablations_come_last(tmp_path,
                                                                                                 monkeypatch):
    study_yaml = write_study(tmp_path, SPLIT_STUDY, ablations=True)
    out, work = tmp_path / "out", tmp_path / "work"
    study = bench.Study(bench.parse(["--study", str(study_yaml), "--out", str(out), "--work", str(work),
                                     "--stages", "supernets,estimates"]))
    events = []

    def run_pool(jobs):  # trains by writing finished run folders; records what was estimated when each pool began
        events.append(("pool", sorted(j[0] for j in jobs), sorted(p.parent.name for p in out.rglob("estimates.json"))))
        for _label, argv, _log in jobs:
            finish(Path(argv[argv.index("--trainer.default_root_dir") + 1]), study.max_steps(argv))

    def estimate(run, path, members, ablate=False, finetune=None):
        events.append(("ablate" if ablate else "estimate", path.parent.name))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"scores": {}, "panel": {}, "seconds": 0.0}')

    monkeypatch.setattr(study, "run_pool", run_pool)
    monkeypatch.setattr(study, "estimate", estimate)
    study.train(["supernets", "estimates"])
    pools = [e for e in events if e[0] == "pool"]
    assert pools[0][1] == ["supernet sandwich", "supernet single"] and pools[0][2] == []
    # the split parts' pool starts with both plain variants already estimated (their results can be committed)
    assert {"sandwich", "single"} <= set(pools[1][2]) and all("split_branches" in j for j in pools[1][1])
    study.estimates()
    kinds = [e[0] for e in events if e[0] != "pool"]
    assert "ablate" in kinds and kinds.index("ablate") > max(i for i, k in enumerate(kinds) if k == "estimate")
    assert (out / "variants" / "split_branches" / "estimates.json").is_file()


def test_a_study_refuses_a_split_of_an_unknown_key_or_base(tmp_path):
    for spec, message in (({"split": {"key": "depth", "from": "single"}}, "split: {key: one of"),
                          ({"split": {"key": "branches", "from": "nowhere"}}, "split.from: 'nowhere'"),
                          ({"estimate": {"from": "nowhere", "finetune": {}}}, "estimate.from: 'nowhere'"),
                          ({"estimate": {"from": "single", "finetune": {"epochs": 3}}}, "unknown settings"),
                          ({"estimate": {"from": "single"}}, "and nothing else")):
        study = write_study(tmp_path, {"single": [], "bad": spec})
        with pytest.raises(SystemExit, match=message):
            bench.Study(bench.parse(["--study", str(study), "--out", str(tmp_path / "out")]))


def test_the_report_stage_writes_report_json_from_the_results_folder_alone(tmp_path):
    study_yaml = write_study(tmp_path, {"sandwich": [], "single": ["--model.init_args.sampling", "single"]},
                             panel=6, seeds=(0, 1))
    out = tmp_path / "out"
    study = bench.Study(bench.parse(["--study", str(study_yaml), "--out", str(out)]))
    panel = study.panel
    for seed in (0, 1):
        cache = study.cache(seed)
        for i, arch in enumerate(panel.values()):
            cache.put(arch, {"miou": 0.2 + 0.01 * i + 0.001 * seed})
    for v, sign in (("sandwich", 1), ("single", -1)):
        scores = {n: 0.5 + sign * 0.01 * i for i, n in enumerate(panel)}
        write_json(out / "variants" / v / "estimates.json",
                   {"scores": scores, "panel": {n: a.to_dict() for n, a in panel.items()}})
    with contextlib.redirect_stdout(io.StringIO()):
        assert bench.main(["--study", str(study_yaml), "--out", str(out), "--stages", "report"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["variants"]) == {"sandwich", "single"} and report["default"] == "sandwich"
    assert report["variants"]["sandwich"]["tau"] == pytest.approx(1.0)
    assert report["variants"]["single"]["tau"] == pytest.approx(-1.0)
    assert report["seed_to_seed_tau"] == pytest.approx(1.0) and set(report["baselines"]) == {"macs", "params"}
    assert report["references"] == 6 and math.isfinite(report["variants"]["sandwich"]["surrogate_loo_tau"])
    assert "| **sandwich** |" in (out / "report.md").read_text()
    read_back = read_rank_study(out)  # what the notebook reads: the random members' pairs per variant
    assert read_back.groups == ["sandwich", "single"] and len(read_back.of("single")) == 6
    assert read_back.tau("sandwich") == pytest.approx(1.0) and read_back.tau("single") == pytest.approx(-1.0)


def test_a_failed_job_is_reported_at_the_end_and_the_others_go_on(tmp_path):
    study = bench.Study(bench.parse(["--study", str(write_study(tmp_path, {"single": []})), "--out",
                                     str(tmp_path / "out"), "--cpu_jobs", "2"]))
    python = bench.sys.executable
    jobs = [("broken", [python, "-c", "raise SystemExit(3)"], tmp_path / "broken.log"),
            ("fine", [python, "-c", "open('done', 'w')"], tmp_path / "fine.log"),
            ("later", [python, "-c", "open('later', 'w')"], tmp_path / "later.log")]
    with contextlib.chdir(tmp_path), contextlib.redirect_stdout(io.StringIO()):
        study.run_pool(jobs)  # no exception: the remaining jobs, the estimates and the report still run
    assert (tmp_path / "done").is_file() and (tmp_path / "later").is_file()
    assert len(study.failed) == 1 and study.failed[0].startswith("broken (exit 3)")


@pytest.mark.parametrize("name", ["camvid_proxy", "camvid_full"])
def test_the_camvid_studies_hold_the_variants_and_each_parses_as_hyctas_fit(name, tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["hyctas"])  # LightningCLI reads the arguments given, not pytest's
    study = bench.Study(bench.parse(["--study", str(ROOT / "configs" / "ranking" / f"{name}.yaml"), "--out",
                                     str(tmp_path / "out"), "--work", str(tmp_path / "work")]))
    specs = study.specs
    assert {"sandwich", "single", "fair", "complexity"} <= set(specs)
    assert "--model.init_args.distill" not in specs["fair"]["overrides"]  # fair alone, without distillation
    assert any(s["split"] for s in specs.values())
    larger = [n for n in specs if n.startswith("sandwich_")]
    assert larger and study.max_steps(study.fit_job(larger[0], study.overrides(larger[0]), tmp_path)[1]) > \
        study.max_steps(study.fit_job("sandwich", [], tmp_path)[1])
    for variant in specs:
        if specs[variant]["estimate"]:  # trains nothing: estimated through another variant's supernet
            assert specs[variant]["estimate"]["from"] in specs
            continue
        overrides = study.overrides(variant)
        if specs[variant]["split"]:
            split = specs[variant]["split"]
            overrides = bench.split_overrides(split, SPLITS.get(split["key"]).parts(study.space)[0],
                                              tmp_path / "base") + overrides
        argv = study.fit_job(variant, overrides, tmp_path / variant)[1]
        argv = argv[argv.index("fit"):] + ["--print_config"]
        with contextlib.redirect_stdout(io.StringIO()) as printed, pytest.raises(SystemExit) as done:
            hyctas_main(argv)
        assert done.value.code in (None, 0), (variant, printed.getvalue())
        config = yaml.safe_load(printed.getvalue())
        assert config["trainer"]["max_steps"] == study.max_steps(argv), variant


@pytest.mark.slow
def test_a_tiny_study_with_a_split_runs_end_to_end_and_resumes_from_its_results(tmp_path):
    study_yaml = write_study(tmp_path, {"single": SPLIT_STUDY["single"], "split_branches":
                                        SPLIT_STUDY["split_branches"], "single_ft": {"estimate": {
                                            "from": "single", "finetune": {"steps": 2, "images": 8}}}},
                             panel=3, seeds=(0,), ablations=True)
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["--study", str(study_yaml), "--out", str(out), "--work", str(work), "--cpu_jobs", "2"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert bench.main(args) == 0
    for part in (1, 2, 3):
        ckpt = torch.load(work / "variants" / "split_branches" / "parts" / str(part) / "checkpoints" / "last.ckpt",
                          map_location="cpu", weights_only=False)
        assert ckpt["global_step"] == 2 and ckpt["hyctas"]["sampler"]["part"] == part
    merged = json.loads((out / "variants" / "split_branches" / "estimates.json").read_text())
    panel = ranking_panel(SearchSpace(**SPACE), 3, 0)
    assert set(merged["scores"]) == set(panel)
    for part in (1, 2, 3):  # each member estimated by its own part's supernet
        own = json.loads((out / "variants" / "split_branches" / "parts" / str(part) / "estimates.json").read_text())
        assert set(own["scores"]) == {n for n, a in panel.items() if a.num_branches == part}
    report = json.loads((out / "report.json").read_text())
    assert set(report["variants"]) == {"single", "split_branches", "single_ft"}
    assert report["variants"]["single"]["n"] == report["variants"]["single_ft"]["n"] == 3
    assert not (work / "variants" / "single_ft").exists()  # estimated through single's supernet, nothing trained
    assert not (out / "variants" / "single_ft" / "ablations.json").exists()
    # the ablations of the plain variant (a split one has no single supernet to ablate)
    ablated = json.loads((out / "variants" / "single" / "ablations.json").read_text())["scores"]
    assert set(ablated) == {f"{n}:{k}" for n in panel if n.startswith("random") for k in ABLATIONS}
    assert not (out / "variants" / "split_branches" / "ablations.json").exists()
    assert set(report["ablations"]) == {"single"} and set(report["ablations"]["single"]) == {"members", *ABLATIONS}
    assert "| single |" in (out / "report.md").read_text().split("ablation_panel")[1]
    assert all(p.suffix in (".json", ".md") for p in out.rglob("*") if p.is_file())  # results only: no checkpoints
    # a fresh machine with the results only: nothing is trained again
    (out / "report.json").unlink()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert bench.main(["--study", str(study_yaml), "--out", str(out), "--work", str(tmp_path / "fresh")]) == 0
    assert "start " not in printed.getvalue() and (out / "report.json").is_file()
