"""The pipeline: config checks, the manifest, jobs spread over GPUs, picks, logged metrics, and the report
regenerated from a committed run folder with no GPU."""
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from hyctas_lightning.cli import main
from hyctas_lightning.errors import ConfigError
from hyctas_lightning.fileio import write_json
from hyctas_lightning.locks import LockHeld
from hyctas_lightning.pipeline import (
    STAGE_RUNNERS,
    STAGES,
    PipelineConfig,
    PipelineConfigError,
    RunContext,
)
from hyctas_lightning.pipeline.jobs import Job, run_jobs
from hyctas_lightning.pipeline.manifest import DONE, Manifest
from hyctas_lightning.pipeline.networks import Network, fit_job, training_folder
from hyctas_lightning.pipeline.picks import spread_picks
from hyctas_lightning.search.journal import Candidate
from hyctas_lightning.search_space import SearchSpace
from hyctas_lightning.training.curves import Curve, last_value, read_curves

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo" / "pipeline.yaml"
CAMVID = ROOT / "configs" / "camvid" / "pipeline.yaml"
FIXTURE = ROOT / "tests" / "fixtures" / "pipeline_demo"


def demo_config(**changes) -> PipelineConfig:
    data = yaml.safe_load(DEMO.read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        data[section][key] = value
    return PipelineConfig.from_dict(data)


# ---------------------------------------------------------------------------------------------- config
def test_configs_resolve_and_validate(monkeypatch):
    monkeypatch.chdir(ROOT)
    camvid = PipelineConfig.from_dict(yaml.safe_load(CAMVID.read_text()))
    camvid.validate()
    search = camvid.resolved_search()  # the search file's section, then the pipeline's overrides
    assert search.latency_variant == "fp16-fold-cl-graph" and search.population == 40 and search.generations == 20
    assert [b.label for b in camvid.retrain.baselines] == ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large",
                                                           "hyctas_s", "hyctas_m"]
    demo = demo_config()
    demo.validate()
    assert demo.resolved_search().population == 6  # overrides win over configs/demo/search.yaml's 8
    assert PipelineConfig.from_dict(demo.to_dict()) == demo


@pytest.mark.parametrize("section, key, value, message", [
    ("retrain", "reference", "unet", "retrain.reference: 'unet' is not one of retrain.baselines"),
    ("latency", "sizes", [[32, 32]], "latency.sizes: add the search's latency_size \\[64, 128\\]"),
    ("latency", "variants", ["fp32-fold"], "latency.variants: add the search's latency_variant 'fp32'"),
    ("rank", "architectures", 2, "rank.architectures: at least 3"),
    ("train", "config", ["configs/nowhere.yaml"], "train.config: file\\(s\\) not found: configs/nowhere.yaml"),
    ("search", "overrides", {"population": 2}, "population: at least 4"),
    ("search", "overrides", {"populace": 9}, "search.overrides"),
])
def test_bad_settings_are_refused_naming_the_field(monkeypatch, section, key, value, message):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ValueError, match=message):
        demo_config(**{f"{section}__{key}": value}).validate()


def test_unknown_sections_and_fields_are_refused():
    with pytest.raises(PipelineConfigError, match="unknown section"):
        PipelineConfig.from_dict({"retrian": {}})
    with pytest.raises(PipelineConfigError, match="retrain: unknown field\\(s\\) \\['sead'\\]"):
        PipelineConfig.from_dict({"retrain": {"sead": 1}})


def test_cli_needs_a_config_or_a_run_with_a_manifest(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["pipeline", "--run", str(tmp_path)]) == 2
    assert "give --config PIPELINE.yaml, or --run DIR of a run that has a manifest.json" in capsys.readouterr().err
    assert main(["pipeline", "--config", str(DEMO), "--run", str(tmp_path), "--retrain.reference", "unet"]) == 2
    assert "retrain.reference: 'unet'" in capsys.readouterr().err
    assert main(["pipeline", "--config", str(DEMO), "--run", str(tmp_path), "--stages", "cap"]) == 2
    assert "error: stage 'cap' needs the 'supernet' stage's results; run --stages supernet first" in \
        capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()  # refused before anything changed


# ---------------------------------------------------------------------------------------------- manifest
def test_manifest_times_stages_closes_interrupted_attempts_and_checks_inputs(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.begin("search", {"search": {"population": 40}}, gpus=2)
    time.sleep(0.2)
    manifest.heartbeat("search")
    # killed here: a new process finds the attempt open and closes it at its last heartbeat
    manifest = Manifest(tmp_path)
    manifest.begin("search", {"search": {"population": 40}}, gpus=2)
    manifest.finish("search", {"front": ["abc"]})
    record = json.loads((tmp_path / "manifest.json").read_text())["stages"]["search"]
    first, second = record["attempts"]
    assert first["interrupted"] and 0.15 < first["seconds"] < 5 and first["gpu_minutes"] == pytest.approx(
        first["seconds"] * 2 / 60, abs=0.01)
    assert record["status"] == DONE and record["outputs"] == {"front": ["abc"]}
    assert record["seconds"] == pytest.approx(first["seconds"] + second["seconds"], abs=0.11)
    manifest.check_inputs("search", {"search": {"population": 40}})  # unchanged: fine
    with pytest.raises(ConfigError, match="changed: search.population\\); rerun it with --force search"):
        manifest.check_inputs("search", {"search": {"population": 20}})
    manifest.reset("search")
    assert manifest.status("search") == "pending"


def test_one_pipeline_per_run_folder_and_atomic_json(tmp_path):
    holder = Manifest(tmp_path)
    holder.lock()
    with pytest.raises(LockHeld, match=f"another pipeline is running on {tmp_path}: pid {os.getpid()} on "):
        Manifest(tmp_path).lock()
    write_json(tmp_path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


# ---------------------------------------------------------------------------------------------- jobs
def sleeper(tmp_path: Path, name: str, seconds: float = 1.5, code: int = 0) -> Job:
    script = (f"import json, os, sys, time; start = time.time(); time.sleep({seconds}); "
              "print(json.dumps({'gpu': os.environ['CUDA_VISIBLE_DEVICES'], 'start': start, 'end': time.time()})); "
              f"print('the end of {name}', flush=True); sys.exit({code})")
    return Job(name, [sys.executable, "-c", script], tmp_path / f"{name}.log", name)


def spans(tmp_path: Path, names):
    return [json.loads(next(line for line in (tmp_path / f"{n}.log").read_text().splitlines() if line.startswith("{")))
            for n in names]


def most_at_once(records) -> int:
    return max(sum(r["start"] <= t["start"] < r["end"] for r in records) for t in records)


def test_jobs_spread_over_gpus_several_per_gpu_and_failures_do_not_stop_the_others(tmp_path):
    names = [f"job{i}" for i in range(4)]
    jobs = [sleeper(tmp_path, n) for n in names] + [sleeper(tmp_path, "broken", 0.1, code=3)]
    finished = []
    results = run_jobs(jobs, ["0", "1"], per_gpu=2, on_done=lambda job, result: finished.append(job.key))
    assert sorted(finished) == sorted([*names, "broken"])
    assert all(results[n].ok for n in names) and results["broken"].returncode == 3
    assert "the end of broken" in results["broken"].tail
    records = spans(tmp_path, names)
    assert sorted(r["gpu"] for r in records) == ["0", "0", "1", "1"]
    assert most_at_once(records) >= 3  # 4 slots: the sleepers ran side by side
    for gpu in "01":
        assert most_at_once([r for r in records if r["gpu"] == gpu]) <= 2


def test_without_gpus_jobs_run_one_at_a_time_with_no_gpu_visible(tmp_path):
    names = ["a", "b", "c"]
    results = run_jobs([sleeper(tmp_path, n, 0.3) for n in names], [], per_gpu=3)
    assert all(r.ok and r.gpu is None for r in results.values())
    records = spans(tmp_path, names)
    assert most_at_once(records) == 1 and {r["gpu"] for r in records} == {""}


def test_a_stopped_pipeline_stops_its_sub_commands(tmp_path):
    """Ctrl-C or SIGTERM (turned into KeyboardInterrupt by the CLI) must not leave trainings holding a GPU."""
    script = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    job = Job("long", [sys.executable, "-c", script], tmp_path / "long.log")

    def stop():
        if (tmp_path / "long.log").read_text().strip().splitlines()[1:]:  # the child has started
            raise KeyboardInterrupt

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_jobs([job], ["0"], on_tick=stop, tick_seconds=0.1, poll_seconds=0.1)
    assert time.monotonic() - start < 30
    pid = int((tmp_path / "long.log").read_text().strip().splitlines()[-1])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_trainings_resume_from_last_ckpt_in_folders_keyed_by_the_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = demo_config()
    config.run = str(tmp_path)
    ctx = RunContext(config)
    net = Network("lraspp", "baseline", "lraspp", ["--model.init_args.network", "lraspp_mobilenet_v3_large"], [0])
    job = fit_job(ctx, net, 0)
    assert "--ckpt_path" not in job.argv and "--seed_everything" in job.argv
    last = training_folder(ctx, net, 0) / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    assert fit_job(ctx, net, 0).argv[-2:] == ["--ckpt_path", str(last)]
    changed = demo_config(train__args=["--trainer.max_epochs", "3"])
    changed.run = str(tmp_path)
    other = RunContext(changed)
    assert training_folder(other, net, 0) != training_folder(ctx, net, 0)  # another recipe never resumes its runs


class Launched(Exception):
    pass


@pytest.mark.parametrize("devices", [1, 3])
def test_supernet_and_search_stages_launch_one_process_per_gpu(tmp_path, monkeypatch, devices):
    monkeypatch.chdir(ROOT)
    config = demo_config(supernet__devices=devices, search__devices=devices)
    config.run = str(tmp_path)
    ctx = RunContext(config)
    ctx._gpus = ["0", "1", "2", "3"]
    launched = []

    def run_job(job, gpus):
        launched.append((job.argv, list(gpus)))
        raise Launched

    monkeypatch.setattr(ctx, "run_job", run_job)
    monkeypatch.setattr(ctx, "require", lambda stage: {"checkpoint": "supernet.ckpt", "cap_ms": 1.0, "data": {}})
    for stage in ("supernet", "search"):
        ctx.stage = stage
        ctx.manifest.begin(stage, {}, gpus=0)
        with pytest.raises(Launched):
            STAGE_RUNNERS[stage].run(ctx)
    (fit, fit_gpus), (search, search_gpus) = launched
    assert fit_gpus == search_gpus == ["0", "1", "2", "3"][:devices]
    assert fit[fit.index("--trainer.devices") + 1] == str(devices)  # strategy auto: Lightning's DDP on several
    assert (search[search.index("--devices") + 1] == str(devices)) if devices > 1 else "--devices" not in search


def test_stages_read_only_earlier_stages_and_write_only_what_they_declare(tmp_path):
    assert list(STAGE_RUNNERS) == list(STAGES)
    for i, name in enumerate(STAGES):
        assert set(STAGE_RUNNERS[name].reads) <= set(STAGES[:i]), name
    config = demo_config()
    config.run = str(tmp_path)
    ctx = RunContext(config)
    ctx.stage, ctx.writes = "cap", STAGE_RUNNERS["cap"].writes
    ctx.save_results(cap={"cap_ms": 1.5})
    assert json.loads((tmp_path / "results.json").read_text()) == {"cap": {"cap_ms": 1.5}}
    with pytest.raises(RuntimeError, match="writes results section\\(s\\) \\['networks'\\] it does not declare"):
        ctx.save_results(networks={})


# ---------------------------------------------------------------------------------------------- picks, logs
def test_rank_picks_span_the_latency_range():
    space = SearchSpace(layers=4, fch=4)
    rng = random.Random(0)
    candidates = [Candidate(space.sample(rng), {"miou": rng.random(), "latency_ms": float(i)}, True, 0)
                  for i in range(1, 41)]
    candidates += [Candidate(space.sample(rng), {"miou": None, "latency_ms": 99.0}, False, 0)]
    front = {c.hash for c in candidates[5:35:5]}
    picks = spread_picks(candidates, front, count=8, front_count=3, seed=1)
    assert len(picks) == 8 and len({c.hash for c, _ in picks}) == 8
    assert [s for _, s in picks].count("front") == 3 and all(c.hash in front for c, s in picks if s == "front")
    latencies = [c.measurements["latency_ms"] for c, _ in picks]
    assert latencies == sorted(latencies) and min(latencies) <= 8 and max(latencies) >= 33 and max(latencies) < 99
    assert spread_picks(candidates, front, 8, 3, seed=1) == picks
    assert len(spread_picks(candidates[:5], set(), 8, 3, seed=1)) == 5  # fewer feasible than asked: all of them


def test_metrics_come_from_the_logged_files(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for step in range(3):
        writer.add_scalar("train/images_per_s", 100.0 + step, step)
    writer.add_scalar("test/mIoU", 0.5, 3)
    writer.close()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "metrics.csv").write_text("epoch,step,test/mIoU\n0,0,0.9\n")
    scalars = read_curves(tmp_path, recursive=False)
    assert last_value(scalars, ["train/samples_per_sec", "train/images_per_s"]) == 102.0
    assert scalars["test/mIoU"] == Curve((3,), (0.5,))  # not the sub-folder's
    assert read_curves(tmp_path / "sub")["test/mIoU"] == Curve((0,), (0.9,))
    assert last_value(scalars, ["nothing"]) is None


# ---------------------------------------------------------------------------------------------- report
def test_report_regenerates_from_the_committed_run_folder_alone(tmp_path, monkeypatch):
    """The acceptance check 'the pipeline reproduces its last report from its manifest with no GPU': a run folder
    holding only manifest.json, results.json and candidates.json gives back the committed REPORT.md."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    run = tmp_path / "run"
    run.mkdir()
    for name in ("manifest.json", "results.json", "candidates.json"):
        shutil.copy(FIXTURE / name, run / name)
    assert main(["pipeline", "--run", str(run), "--stages", "report"]) == 0
    assert (run / "REPORT.md").read_text() == (FIXTURE / "REPORT.md").read_text()
    assert (run / "pareto.png").stat().st_size > 10_000 and (run / "rank.png").stat().st_size > 10_000
    text = (run / "REPORT.md").read_text()
    for heading in ("## Verdict", "## Networks", "Per-class IoU", "## Does the supernet rank?", "Kendall tau",
                    "## Model zoo", "## Stages and cost", "GPU-minutes", "## Commands", "hyctas pipeline --config"):
        assert heading in text
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    assert stages["report"]["status"] == DONE and len(stages["report"]["attempts"]) >= 2


def network_entry(kind, mious, ms, estimate=None):
    """A results.json network entry: per-seed mIoU, two variants at one size."""
    mean = sum(mious) / len(mious)
    return {"kind": kind, "seeds": {str(i): {"miou": m, "iou": {"road": m, "sky": m / 2}} for i, m in enumerate(mious)},
            "miou_mean": mean, "miou_std": 0.0, "params_m": 1.0, "macs_g": {"64x128": 2.0},
            "latency": {"64x128": {"fp32": ms, "fp16-fold-cl": ms / 2}}, "estimate": estimate}


def test_report_verdict_tables_and_plots_from_results(tmp_path):
    from hyctas_lightning.pipeline.report import class_table, networks_table, verdict, write_report

    results = {"classes": ["road", "sky"], "split": "val",
               "latency": {"variants": ["fp32", "fp16-fold-cl"], "sizes": ["64x128"], "warmup": 1, "runs": 2,
                           "device": "test GPU"},
               "networks": {
                   "searched_1": network_entry("searched", [0.62, 0.64], 3.0, {"miou": 0.2, "latency_ms": 2.5}),
                   "searched_2": network_entry("searched", [0.50], 1.0, {"miou": 0.3, "latency_ms": 0.9}),
                   "lraspp": network_entry("baseline", [0.60, 0.61], 2.0)}}
    lines = "\n".join(verdict(results, "lraspp"))
    assert "Best searched network **searched_1**: mean val mIoU 63.00 over 2 seed(s)" in lines
    assert "**+2.50 points**" in lines and "| fp32 | 64x128 | 3.00 | 2.00 | 1.50x |" in lines
    assert "does not beat lraspp on both counts: it is more accurate; not faster in fp32 at 64x128" in lines
    results["networks"]["searched_1"]["latency"]["64x128"] = {"fp32": 1.0, "fp16-fold-cl": 0.5}
    assert "more accurate than lraspp and faster in every variant" in "\n".join(verdict(results, "lraspp"))
    table = "\n".join(networks_table(results))
    assert "| searched_1 | searched | 62.00 | 64.00 | 63.00 ± 0.00 | 1.00 | 2.00 | 1.00 | 0.50 | 20.00 |" in table
    assert "| searched_2 | searched | 50.00 | - |" in table  # one seed only
    assert "| road | 63.0 | 60.5 | 50.0 |" in "\n".join(class_table(results))
    manifest = {"config": {"retrain": {"reference": "lraspp"}, "train": {"config": ["r.yaml"], "args": []}}}
    written = write_report(tmp_path, "Test", manifest, results, candidates=[])
    assert [p.name for p in written] == ["REPORT.md", "pareto.png", "rank.png"]
    assert "(the rank stage has not run)" in (tmp_path / "REPORT.md").read_text()
