"""The pipeline when things go wrong: refusals are one line with their exit status, a killed driver takes its
sub-commands with it, a folder still being written is refused, and a run killed again and again ends as if it had
never been interrupted."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from hyctas_lightning import processes
from hyctas_lightning.cli import errors as E
from hyctas_lightning.cli import main
from hyctas_lightning.locks import FileLock
from hyctas_lightning.pipeline import STAGE_RUNNERS, PipelineConfig, RunContext
from hyctas_lightning.pipeline.jobs import JOB_LOCK
from hyctas_lightning.pipeline.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]
LINUX = sys.platform.startswith("linux")
STAGES = ["supernet", "cap", "search"]


def tiny_pipeline(folder: Path, run: str = "run") -> Path:
    """A pipeline config of seconds per stage: a 4-layer supernet trained 3 short epochs, a cap far above any
    latency (so feasibility never depends on a timing), and a 4 x 1 search whose objectives are mIoU and parameters
    (deterministic, unlike measured latency)."""
    config = {
        "run": str(folder / run), "device": "cpu",
        "data": {"train_samples": 16, "val_samples": 8, "test_samples": 8, "size": [64, 128], "batch_size": 8,
                 "num_workers": 0},
        "supernet": {"config": [str(ROOT / "configs/demo/supernet.yaml")],
                     "args": ["--trainer.max_epochs", "3", "--model.init_args.val_random", "1",
                              "--model.init_args.space.layers", "4", "--model.init_args.calibration_images", "8",
                              "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]},
        "cap": {"reference": "lraspp_mobilenet_v3_large", "factor": 1000.0},
        "search": {"config": str(ROOT / "configs/demo/search.yaml"),
                   "overrides": {"objectives": ["miou", "params_m"], "population": 4, "generations": 1,
                                 "calibration_images": 8, "val_images": 8, "latency_size": [64, 128],
                                 "latency_warmup": 0, "latency_runs": 1, "top_k": 2}},
        "train": {"config": [str(ROOT / "configs/demo/retrain.yaml")]},
        "rank": {"architectures": 3, "front": 2},
        "latency": {"sizes": [[64, 128]], "variants": ["fp32"]},
    }
    path = folder / f"{run}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fails(capsys, args, code: int, text: str) -> str:
    """``hyctas pipeline ARGS`` exits with ``code`` and one ``error:`` line holding ``text``."""
    assert main(["pipeline", *map(str, args)]) == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("hyctas pipeline: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert text in lines[0], lines[0]
    return lines[0]


def driver(config: Path, *args: str) -> subprocess.Popen:
    """``hyctas pipeline`` as its own process (the one a test kills)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "hyctas_lightning.cli", "pipeline", "--config", str(config),
                             *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waiting for its parent to collect it has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


# ---------------------------------------------------------------------------------------------- refusals
def test_refusals_are_one_line_with_the_tables_status(tmp_path, capsys):
    config = tiny_pipeline(tmp_path)
    run = tmp_path / "run"
    fails(capsys, ["--config", config, "--stages", "supernets"], E.EXIT_USAGE,
          "--stages/--force: unknown stage(s) ['supernets']; the stages are supernet, cap, search")
    fails(capsys, ["--config", config, "--stages", "supernet", "--force", "serach"], E.EXIT_USAGE,
          "unknown stage(s) ['serach']")
    if not torch.cuda.is_available():
        fails(capsys, ["--config", config, "--device", "cuda"], E.EXIT_DEVICE,
              "device: cuda, but no GPU is visible; use device: auto or cpu")
    assert not (run / "manifest.json").exists() and not (run / "supernet").exists()  # nothing ran


def test_a_changed_value_is_named_but_a_tuple_read_back_as_a_list_is_no_change(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.begin("search", {"search": {"latency_size": (64, 128), "population": 4}}, gpus=0)
    manifest.finish("search", {})
    again = Manifest(tmp_path)  # read back from JSON: the size is a list now
    again.check_inputs("search", {"search": {"latency_size": (64, 128), "population": 4}})
    with pytest.raises(ValueError, match=r"\(changed: search.population\); rerun it with --force search"):
        again.check_inputs("search", {"search": {"latency_size": (64, 128), "population": 6}})


def test_a_deleted_supernet_checkpoint_names_the_stage_to_rerun(tmp_path, capsys):
    config = tiny_pipeline(tmp_path)
    run = tmp_path / "run"
    ctx = RunContext(PipelineConfig.from_dict(yaml.safe_load(config.read_text())))
    for name, outputs in (("supernet", {"checkpoint": "supernet/checkpoints/last.ckpt", "num_classes": 8}),
                          ("cap", {"cap_ms": 1000.0})):  # both finished; then the checkpoint was deleted
        ctx.manifest.begin(name, STAGE_RUNNERS[name].inputs(ctx), gpus=0)
        ctx.manifest.finish(name, outputs)
    fails(capsys, ["--config", config, "--force", "search"], E.EXIT_USAGE,
          f"stage 'search' reads {run}/supernet/checkpoints/last.ckpt, which the 'supernet' stage made and is gone; "
          f"rerun the supernet stage: hyctas pipeline --config {config} --run {run} --force supernet search")
    fails(capsys, ["--config", config, "--stages", "search", "--force", "search"], E.EXIT_USAGE,
          "--stages supernet search --force supernet search")
    assert Manifest(run).status("search") == "pending"  # refused before anything changed


@pytest.mark.parametrize("text, message", [('{"version": 1, "stages": {"supernet": {"sta', "not valid JSON"),
                                           ("supernet: done\n", "not valid JSON"),
                                           ("[1, 2]", "not a pipeline manifest")])
def test_a_cut_short_or_foreign_manifest_is_named(tmp_path, capsys, text, message):
    config = tiny_pipeline(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run/manifest.json").write_text(text)
    fails(capsys, ["--config", config], E.EXIT_FILES, f"{tmp_path / 'run/manifest.json'}: {message}")
    assert (tmp_path / "run/manifest.json").read_text() == text  # left for the user to restore


# ---------------------------------------------------------------------------------------------- collisions
def test_a_folder_still_being_written_is_refused(tmp_path, capsys):
    config = tiny_pipeline(tmp_path)
    folder = tmp_path / "run/supernet"
    orphan = FileLock(folder / JOB_LOCK).acquire()  # what an orphan of a killed pipeline holds
    orphan.note("pid 4242 on host since then: hyctas fit --config supernet.yaml")
    fails(capsys, ["--config", config, "--stages", "supernet"], E.EXIT_BUSY,
          f"{folder} is being written by another process (pid 4242 on host since then: hyctas fit --config "
          f"supernet.yaml), perhaps one a killed pipeline left running; wait for it to end or stop it, then rerun")
    assert not (folder / "fit.log").exists()  # no second writer was started
    holder = FileLock(tmp_path / "run/.pipeline.lock").acquire()  # a second pipeline on the run folder
    fails(capsys, ["--config", config, "--stages", "supernet"], E.EXIT_BUSY,
          f"another pipeline is running on {tmp_path / 'run'}: pid {os.getpid()} on ")
    holder.release()
    orphan.release()


@pytest.mark.skipif(not LINUX, reason="the parent-death signal is Linux's")
def test_the_sub_commands_of_a_killed_driver_end_with_it(tmp_path):
    config = tiny_pipeline(tmp_path)
    lock = tmp_path / "run/supernet" / JOB_LOCK
    pipeline = driver(config, "--stages", "supernet")
    child = None
    deadline = time.monotonic() + 120
    while child is None and pipeline.poll() is None and time.monotonic() < deadline:
        named = lock.read_text().split() if lock.exists() else []
        child = int(named[1]) if named[:1] == ["pid"] and named[1] != str(pipeline.pid) else None
        time.sleep(0.05)
    assert child is not None and alive(child), pipeline.stderr.read() if pipeline.poll() is not None else "no child"
    pipeline.send_signal(signal.SIGKILL)
    pipeline.wait()
    gone = time.monotonic() + 5
    while alive(child) and time.monotonic() < gone:
        time.sleep(0.05)
    assert not alive(child), f"hyctas fit (pid {child}) outlived its pipeline"


@pytest.mark.parametrize("parent, ppid, gone", [(100, 100, False),  # started by the named parent
                                                (100, 200, False),  # through a launcher it started
                                                (100, 1, True)])  # the named parent ended before it could follow
def test_a_command_follows_the_parent_it_was_started_by(monkeypatch, parent, ppid, gone):
    calls, kills = [], []

    def kill(pid: int, sig: int) -> None:
        if sig == 0 and gone and pid == parent:
            raise ProcessLookupError(pid)
        if sig != 0:
            kills.append((pid, sig))

    monkeypatch.setattr(processes, "_PRCTL", lambda *args: calls.append(args) or 0)
    monkeypatch.setattr(processes.os, "getppid", lambda: ppid)
    monkeypatch.setattr(processes.os, "kill", kill)
    monkeypatch.setenv(processes.PARENT_ENV, str(parent))
    processes.follow_parent()
    assert calls == [(processes.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)]
    assert kills == ([(os.getpid(), signal.SIGKILL)] if gone else [])  # never a command whose parents live
    assert os.environ[processes.PARENT_ENV] == str(os.getpid())  # passed on


# ---------------------------------------------------------------------------------------------- soak
def normalised(run: Path) -> dict:
    """What a finished run must reproduce exactly, however often it was killed: the stages' status, inputs and
    outputs, the jobs, ``results.json``, the front, every candidate, and the supernet's weights. Left out, because
    no rerun reproduces them: wall-clock times (attempts, seconds, heartbeats, invocations), measured latencies
    (the cap's reference, the candidates' latency_ms, the throughput), and what derives from them or from the
    run folder's path (the checkpoint file's digest, upstream digests, commands' paths)."""
    manifest = json.loads((run / "manifest.json").read_text())
    results = json.loads((run / "results.json").read_text())
    drop = {"supernet": {"sha256", "images_per_s"}, "cap": {"reference_ms", "cap_ms", "device"}}
    stages = {name: {"status": record["status"], "outputs": {k: v for k, v in record["outputs"].items()
                                                             if k not in drop.get(name, ())},
                     "inputs": {k: v for k, v in record["inputs"].items() if k not in ("cap", "supernet")}}
              for name, record in manifest["stages"].items()}
    jobs = {key: {k: str(v).replace(str(run), "RUN") for k, v in job.items() if k != "seconds"}
            for key, job in manifest["jobs"].items()}
    results["supernet"].pop("images_per_s")
    results["cap"] = {k: v for k, v in results["cap"].items() if k not in drop["cap"]}
    results["search"].pop("cap_ms")

    def measured(entry: dict) -> dict:
        entry = {k: v for k, v in entry.items() if k not in ("timing", "inputs")}
        entry["measurements"] = {k: v for k, v in entry["measurements"].items() if k != "latency_ms"}
        return entry

    journal = [measured(json.loads(line)) for line in (run / "search/candidates.jsonl").read_text().splitlines()]
    weights = torch.load(run / "supernet/checkpoints/last.ckpt", weights_only=True, map_location="cpu")
    return {"stages": stages, "jobs": jobs, "results": results,
            "front": [measured(e) for e in json.loads((run / "search/pareto.json").read_text())],
            "candidates": [measured(e) for e in json.loads((run / "candidates.json").read_text())],
            "journal": sorted(journal, key=lambda e: e["hash"]),
            "topk": sorted(p.name for p in (run / "search/topk").iterdir()),
            "epoch": weights["epoch"], "global_step": weights["global_step"],
            "weights": {k: hashlib.sha256(v.numpy().tobytes()).hexdigest() for k, v in weights["state_dict"].items()}}


def job_working(log: Path, before: int) -> bool:
    """Whether the job a driver started into ``log`` (``before`` characters long when the driver started) is past
    its start-up: it wrote a line after the driver's ``$ command`` header."""
    if not log.exists():
        return False
    return len([line for line in log.read_text()[before:].splitlines() if line.strip()]) >= 2


def kill_point(run: Path, planned: str, rng: random.Random) -> tuple:
    """Where the next kill goes: a random time into the ``planned`` stage's job (or, if that stage finished, the
    first one still to run), past the job's start-up (most of a tiny job's time, and it exercises nothing); once
    every stage finished, a random time into a rerun that only skips them."""
    manifest = run / "manifest.json"
    stages = json.loads(manifest.read_text())["stages"] if manifest.exists() else {}
    todo = [s for s in STAGES if stages.get(s, {}).get("status") != "done"]
    if not todo:
        return None, rng.uniform(1, 4)
    stage = planned if planned in todo else todo[0]
    return stage, rng.uniform(0, WORK_SECONDS[stage])


WORK_SECONDS = {"supernet": 5.0, "cap": 1.0, "search": 1.5}  # the tiny jobs' work, past their start-up
JOB_LOGS = {"supernet": "supernet/fit.log", "cap": "cap/bench.log", "search": "search/search.log"}


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="the parent-death signal is Linux's")
def test_a_pipeline_killed_at_five_random_points_ends_as_an_uninterrupted_run(tmp_path):
    full = driver(tiny_pipeline(tmp_path, "full"), "--stages", *STAGES)  # beside the other: 2 cores
    config, run = tiny_pipeline(tmp_path, "killed"), tmp_path / "killed"
    rng, points = random.Random(24), []
    plan = ["supernet", "supernet", "cap", "search", "search"]  # every stage's work is cut at least once
    while sum(point[-1] == "killed" for point in points) < len(plan):
        assert len(points) < 10, f"the run kept finishing before its kill: {points}"
        stage, delay = kill_point(run, plan[min(len(points), len(plan) - 1)], rng)
        log = run / JOB_LOGS[stage] if stage else None
        before = len(log.read_text()) if log is not None and log.exists() else 0
        pipeline = driver(config, "--stages", *STAGES)
        while log is not None and pipeline.poll() is None and not job_working(log, before):
            time.sleep(0.02)
        try:
            assert pipeline.wait(timeout=delay) == 0, pipeline.stderr.read()
            points.append((stage, round(delay, 2), "finished"))  # it ended before the kill point
        except subprocess.TimeoutExpired:
            pipeline.send_signal(signal.SIGKILL)
            pipeline.wait()
            points.append((stage, round(delay, 2), "killed"))
    resumed = driver(config, "--stages", *STAGES)
    assert resumed.wait() == 0, resumed.stderr.read()
    assert full.wait() == 0, full.stderr.read()
    a, b = normalised(tmp_path / "full"), normalised(run)
    for key in a:
        assert a[key] == b[key], f"{key} differs after kills at {points}"
    assert len({stage for stage, _, how in points if how == "killed"} - {None}) >= 2, points  # spread over stages
