"""Scaling over the GPUs of one host, one command: supernet training images/s and search evaluations/min at 1, 2, ...
N GPUs, with the speed-up over one GPU and where each evaluation's time goes; with ``--paper_search``, the wall time
of the paper's search (population 40, 20 generations) on all N.

    python benchmarks/scaling.py --data_root ../shared/datasets/camvid --out runs/scaling            # all GPUs
    python benchmarks/scaling.py --gpus 1 2 4 --paper_search --time_limit 540 --out runs/scaling

Every figure comes from what the runs logged, not from printed lines:

- **supernet training**: a short ``hyctas fit`` of ``--fit_config`` (default the CamVid supernet, batch 16 per GPU,
  so the global batch grows with the GPUs) for ``--warmup + --steps`` optimiser steps, validation off. Lightning's
  ``ThroughputMonitor`` (window of ``--steps`` batches, so the warm-up steps fall out of the last figure) logs
  the images/s of all processes together into ``metrics.csv``; the last value counts. The config's other callbacks
  stay (``last.ckpt`` rewritten at every epoch's end, as in a real training: with more GPUs, epochs are shorter).
- **search**: ``hyctas search --devices N`` of ``--search_config`` (default the CamVid search: latency in the deployed
  variant at 360x480, BN recalibration, mIoU on the whole val split) with ``--search_population`` and
  ``--search_generations``. Generation 0 is the warm-up; evaluations/min is over the later generations, from
  ``history.json`` (seconds at the end of each generation) and the per-candidate timings of ``candidates.jsonl``
  (profile, build, latency, BN recalibration, validation, on the GPU that evaluated it). "GPU busy" is the summed
  evaluation time over N x the wall time: what generation ends (waiting for the slowest evaluation) and the
  strategy leave idle. The searched supernet is ``--ckpt`` or, without one, the last state of the fit with the
  fewest GPUs (a few steps of training: barely trained weights, but what evaluating an architecture costs does not
  depend on its weights).

Each stage writes its result into ``--out`` and is skipped when the command runs again. With ``--time_limit S`` the
command stops the running stage after S seconds, prints "incomplete, run again" and exits with status 2; run it
again to go on (a cut training or timed search restarts, the paper-size search resumes from its journal). The
tables go to ``OUT/scaling.md`` and ``OUT/scaling.json``. On a machine without GPUs, ``--accelerator cpu`` runs the
same with gloo processes (e.g. ``--fit_config configs/demo/supernet.yaml --search_config configs/demo/search.yaml``).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
import yaml

import hyctas_lightning
from hyctas_lightning.checkpoints import SUPERNET_KIND, read_checkpoint
from hyctas_lightning.pipeline.jobs import hyctas_argv, tail
from hyctas_lightning.training.curves import last_value, read_curves
from hyctas_lightning.training.throughput import THROUGHPUT_METRICS

PARTS = ("profile", "build", "latency", "recalibration", "validation")
MONITOR = "hyctas_lightning.training.TrainingThroughput"
LAST_CHECKPOINT = "hyctas_lightning.training.LastCheckpoint"
RESULT = "result.json"
MIN_STAGE_SECONDS = 20  # a stage is not started with less time left than this
INCOMPLETE = 2


class OutOfTime(Exception):
    """The time limit cut a stage short; its files stay for the next run."""


class Clock:
    """The seconds left of ``--time_limit`` (None: no limit); no stage starts with less than ``min_stage`` left."""

    def __init__(self, limit: Optional[float], min_stage: float = MIN_STAGE_SECONDS) -> None:
        self.deadline = None if limit is None else time.monotonic() + limit
        self.min_stage = min_stage

    def left(self) -> Optional[float]:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check(self) -> Optional[float]:
        """The seconds left; ``OutOfTime`` if too few to start a stage."""
        left = self.left()
        if left is not None and left < self.min_stage:
            raise OutOfTime
        return left


def run_command(args: Sequence[str], log: Path, clock: Clock) -> float:
    """Run ``hyctas ARGS`` (output to ``log``) in its own process group; its wall seconds. Past the time limit the
    whole group (the launcher and the processes it started) is terminated and ``OutOfTime`` raised."""
    left = clock.check()
    src = str(Path(hyctas_lightning.__file__).resolve().parents[1])  # the children import this same package
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    argv = hyctas_argv(args)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as out:
        out.write(f"$ {shlex.join(argv)}\n")
        out.flush()
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            code = process.wait(timeout=left)
        except subprocess.TimeoutExpired:
            stop(process)
            raise OutOfTime from None
        except BaseException:
            stop(process)
            raise
    if code != 0:
        raise RuntimeError(f"hyctas {shlex.join(args)} failed (exit status {code}); the end of {log}:\n{tail(log)}")
    return time.perf_counter() - start


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group of ``process``, SIGKILL after 30 s."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def class_path(callback) -> str:
    return callback.get("class_path", "") if isinstance(callback, dict) else str(callback)


def fit_config(base: dict, run: Path, warmup: int, steps: int) -> dict:
    """``base`` (a ``hyctas fit`` config) as a throughput run: ``warmup + steps`` steps, no validation, metrics in
    ``run/metrics.csv``, one ``TrainingThroughput`` whose window holds the last ``steps`` batches, ``last.ckpt``."""
    config = copy.deepcopy(base)
    trainer = config.setdefault("trainer", {})
    callbacks = [c for c in trainer.get("callbacks") or [] if not class_path(c).endswith(("ThroughputMonitor",
                                                                                          "TrainingThroughput"))]
    if not any(class_path(c).endswith("LastCheckpoint") for c in callbacks):
        callbacks.append({"class_path": LAST_CHECKPOINT})
    callbacks.append({"class_path": MONITOR, "init_args": {"window_size": steps + 1}})
    trainer.update(callbacks=callbacks, max_steps=warmup + steps, max_epochs=-1, limit_val_batches=0,
                   num_sanity_val_steps=0, log_every_n_steps=1, enable_progress_bar=False, default_root_dir=str(run),
                   logger={"class_path": "lightning.pytorch.loggers.CSVLogger",
                           "init_args": {"save_dir": str(run), "name": "", "version": ""}})
    return config


def fit_stage(n: int, args: argparse.Namespace, out: Path, clock: Clock) -> dict:
    """Supernet training on ``n`` devices: images/s of all of them over the timed steps."""
    run = out / "fit" / f"gpus{n}"
    if (run / RESULT).exists():
        return json.loads((run / RESULT).read_text())
    shutil.rmtree(run, ignore_errors=True)  # a cut run restarts: its throughput is measured in one go
    run.mkdir(parents=True)
    base = yaml.safe_load(Path(args.fit_config).read_text())
    (run / "config.yaml").write_text(yaml.safe_dump(fit_config(base, run, args.warmup, args.steps), sort_keys=False))
    command = ["fit", "--config", str(run / "config.yaml"), f"--trainer.accelerator={args.accelerator}",
               f"--trainer.devices={n}", f"--trainer.strategy={'ddp' if n > 1 else 'auto'}",
               *([f"--data.init_args.root={args.data_root}"] if args.data_root else []), *args.fit_arg]
    wall = run_command(command, run / "fit.log", clock)
    scalars = read_curves(run, recursive=False)
    images_per_s = last_value(scalars, THROUGHPUT_METRICS)
    if images_per_s is None:
        raise RuntimeError(f"{run}: no {' or '.join(THROUGHPUT_METRICS)} logged: the run stopped before "
                           f"{args.warmup + args.steps} steps? (see {run / 'fit.log'})")
    batch = last_value(scalars, ["train/samples"]) / last_value(scalars, ["train/batches"])  # process 0's
    row = {"gpus": n, "images_per_s": images_per_s, "timed_steps": args.steps, "warmup_steps": args.warmup,
           "batch_per_gpu": round(batch, 2), "wall_s": round(wall, 1), "command": shlex.join(["hyctas", *command])}
    (run / RESULT).write_text(json.dumps(row, indent=1) + "\n")
    return row


def data_override(ckpt: Path, root: Optional[str]) -> List[str]:
    """``--data`` for ``hyctas search``: the checkpoint's data module with its root set to ``root``."""
    if not root:
        return []
    data = copy.deepcopy(read_checkpoint(ckpt, SUPERNET_KIND)["hyctas"]["data"])
    data.setdefault("init_args", {})["root"] = root
    return ["--data", json.dumps(data)]


def search_command(ckpt: Path, n: int, folder: Path, args: argparse.Namespace, population: int,
                   generations: int) -> List[str]:
    return ["search", "--ckpt", str(ckpt), "--config", args.search_config, "--out", str(folder),
            "--device", "cpu" if args.accelerator == "cpu" else "cuda", "--devices", str(n),
            f"--search.population={population}", f"--search.generations={generations}",
            *data_override(ckpt, args.data_root), *args.search_arg]


def search_rates(folder: Path, n: int) -> dict:
    """Evaluations/min after generation 0 (the warm-up; all of them without later generations) from
    ``history.json``, the mean seconds of each part per evaluation from ``candidates.jsonl``, and the share of
    the ``n`` devices' time spent evaluating."""
    history = json.loads((folder / "history.json").read_text())
    candidates = [json.loads(line) for line in (folder / "candidates.jsonl").read_text().splitlines() if line.strip()]
    first = 1 if len(history) > 1 else 0
    start_s, start_evals = (history[0]["seconds"], history[0]["evaluations"]) if first else (0.0, 0)
    seconds = history[-1]["seconds"] - start_s
    timed = [c for c in candidates if c["generation"] >= first]
    if not timed or seconds <= 0:
        raise RuntimeError(f"{folder}: no evaluation after generation {first - 1}; raise --search_generations")
    parts = {part: sum(c["timing"].get(part, 0.0) for c in timed) / len(timed) for part in PARTS}
    return {"gpus": n, "evaluations": history[-1]["evaluations"] - start_evals, "seconds": round(seconds, 2),
            "evaluations_per_min": 60 * (history[-1]["evaluations"] - start_evals) / seconds,
            "seconds_per_evaluation": parts, "busy": sum(parts.values()) * len(timed) / (n * seconds),
            "generations_timed": len(history) - first}


def device_of(folder: Path) -> Optional[str]:
    inputs = folder / "inputs.json"
    return json.loads(inputs.read_text()).get("device") if inputs.exists() else None


def search_stage(n: int, ckpt: Path, args: argparse.Namespace, out: Path, clock: Clock) -> dict:
    """A short search spread over ``n`` devices, started afresh (a journal replay would time nothing)."""
    folder = out / "search" / f"gpus{n}"
    if (folder / RESULT).exists():
        return json.loads((folder / RESULT).read_text())
    shutil.rmtree(folder, ignore_errors=True)
    command = search_command(ckpt, n, folder, args, args.search_population, args.search_generations)
    wall = run_command(command, folder.with_name(f"gpus{n}.log"), clock)
    row = {**search_rates(folder, n), "device": device_of(folder), "wall_s": round(wall, 1),
           "command": shlex.join(["hyctas", *command])}
    (folder / RESULT).write_text(json.dumps(row, indent=1) + "\n")
    return row


def paper_search_stage(n: int, ckpt: Path, args: argparse.Namespace, out: Path, clock: Clock) -> dict:
    """The paper's 40 x 20 search on ``n`` devices, resumed from its journal when cut; its wall time is the sum of
    its attempts (each restart loads the data and times the GPUs' spread again)."""
    folder = out / "paper_search"
    if (folder / RESULT).exists():
        return json.loads((folder / RESULT).read_text())
    folder.mkdir(parents=True, exist_ok=True)
    attempts_file = folder / "attempts.json"
    attempts = json.loads(attempts_file.read_text()) if attempts_file.exists() else []
    command = search_command(ckpt, n, folder, args, 40, 20)
    clock.check()  # no attempt without the time to start one
    start = time.perf_counter()
    try:
        run_command(command, folder / f"attempt{len(attempts)}.log", clock)
    finally:  # a cut attempt's time counts too
        attempts.append(round(time.perf_counter() - start, 1))
        attempts_file.write_text(json.dumps(attempts) + "\n")
    history = json.loads((folder / "history.json").read_text())
    row = {"gpus": n, "evaluations": history[-1]["evaluations"], "generations": len(history) - 1,
           "wall_s": round(sum(attempts), 1), "attempts": len(attempts), "device": device_of(folder),
           "evaluations_per_min": 60 * history[-1]["evaluations"] / sum(attempts),
           "command": shlex.join(["hyctas", *command])}
    (folder / RESULT).write_text(json.dumps(row, indent=1) + "\n")
    return row


def speedups(rows: Dict[int, dict], key: str) -> Dict[int, Optional[float]]:
    one = rows.get(1, {}).get(key)
    return {n: (row[key] / one if one else None) for n, row in rows.items()}


def markdown(result: dict) -> str:
    """The tables of ``result`` (``scaling.json``) as markdown."""
    fits = {int(n): row for n, row in result["fit"].items()}
    searches = {int(n): row for n, row in result["search"].items()}
    lines = [f"command: `{result['command']}`", f"device: {result['device']}; torch {result['torch']}", ""]

    def ratio(value: Optional[float], n: int) -> str:
        return "-" if value is None else f"{value:.2f}x ({100 * value / n:.0f}%)"

    if fits:
        first = next(iter(fits.values()))
        lines += [f"**Supernet training** (`{result['fit_config']}`, batch {first['batch_per_gpu']:g} per GPU, "
                  f"images/s of all GPUs over {first['timed_steps']} steps after {first['warmup_steps']} warm-up "
                  f"steps, ThroughputMonitor)", "",
                  "| GPUs | images/s | per GPU | speed-up (efficiency) | run wall s |", "|---:|---:|---:|---:|---:|"]
        up = speedups(fits, "images_per_s")
        lines += [f"| {n} | {r['images_per_s']:.1f} | {r['images_per_s'] / n:.1f} | {ratio(up[n], n)} | "
                  f"{r['wall_s']:.0f} |" for n, r in sorted(fits.items())]
        lines.append("")
    if searches:
        up = speedups(searches, "evaluations_per_min")
        lines += [f"**Search** (`{result['search_config']}`, generations after the first, mean seconds of each part "
                  f"per evaluation on the GPU that ran it)", "",
                  "| GPUs | evaluations | evaluations/min | speed-up (efficiency) | "
                  + " | ".join(PARTS) + " | GPU busy |", "|---:" * (5 + len(PARTS)) + "|"]
        lines += [f"| {n} | {r['evaluations']} | {r['evaluations_per_min']:.1f} | {ratio(up[n], n)} | "
                  + " | ".join(f"{r['seconds_per_evaluation'][p]:.2f}" for p in PARTS) + f" | {100 * r['busy']:.0f}% |"
                  for n, r in sorted(searches.items())]
        lines.append("")
    paper = result.get("paper_search")
    if paper:
        lines.append(f"**Paper-size search** (population 40, 20 generations) on {paper['gpus']} GPUs: "
                     f"{paper['evaluations']} evaluations in {paper['wall_s'] / 60:.1f} min wall "
                     f"({paper['attempts']} attempt(s), start-ups included)")
    if not result["complete"]:
        lines.append("\n(incomplete: run the command again)")
    return "\n".join(lines) + "\n"


def gpu_counts(requested: Optional[List[int]], accelerator: str) -> List[int]:
    """``requested``, or 1, 2, 4, ... up to every visible GPU and that number itself."""
    visible = torch.cuda.device_count() if accelerator != "cpu" else None
    if requested:
        if visible is not None and max(requested) > visible:
            raise SystemExit(f"--gpus {requested}: only {visible} GPU(s) visible")
        return sorted(set(requested))
    if not visible:
        raise SystemExit("no GPU visible: give --accelerator cpu --gpus 1 2 (processes) or run on a GPU host")
    counts = [1 << k for k in range(visible.bit_length()) if 1 << k <= visible]
    return sorted(set(counts + [visible]))


def run_stages(args: argparse.Namespace, result: dict, out: Path, clock: Clock) -> None:
    """Every stage in order, filling ``result``; raises ``OutOfTime`` when the limit cuts one."""
    for n in args.gpus:
        result["fit"][str(n)] = fit_stage(n, args, out, clock)
    ckpt = Path(args.ckpt) if args.ckpt else out / "fit" / f"gpus{args.gpus[0]}" / "checkpoints" / "last.ckpt"
    for n in args.gpus:
        result["search"][str(n)] = search_stage(n, ckpt, args, out, clock)
        result["device"] = result["search"][str(n)]["device"] or result["device"]
    if args.paper_search:
        result["paper_search"] = paper_search_stage(max(args.gpus), ckpt, args, out, clock)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/scaling", help="folder of every stage's files and of the tables")
    parser.add_argument("--gpus", type=int, nargs="+", default=None,
                        help="device counts (default: 1, 2, 4, ... up to all visible GPUs)")
    parser.add_argument("--accelerator", choices=("gpu", "cpu"), default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fit_config", default="configs/camvid/supernet.yaml")
    parser.add_argument("--search_config", default="configs/camvid/search.yaml")
    parser.add_argument("--data_root", default=None, help="the data module's root (default: the configs')")
    parser.add_argument("--warmup", type=int, default=10, help="training steps before the timed ones (at least 1)")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps")
    parser.add_argument("--ckpt", default=None, help="supernet checkpoint to search (default: the first fit's)")
    parser.add_argument("--search_population", type=int, default=16)
    parser.add_argument("--search_generations", type=int, default=2, help="timed generations after generation 0")
    parser.add_argument("--paper_search", action="store_true", help="also time a 40 x 20 search on all the GPUs")
    parser.add_argument("--time_limit", type=float, default=None, help="seconds; then stop and say 'run again'")
    parser.add_argument("--fit_arg", action="append", default=[], help="extra hyctas fit argument, as --fit_arg=--x=1")
    parser.add_argument("--search_arg", action="append", default=[], help="extra hyctas search argument (same form)")
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps: at least 1 (the first step's time includes starting the loaders)")
    args.gpus = gpu_counts(args.gpus, args.accelerator)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    result = {"command": f"python {shlex.join(sys.argv)}", "device": "cpu" if args.accelerator == "cpu" else "gpu",
              "torch": torch.__version__, "fit_config": args.fit_config, "search_config": args.search_config,
              "fit": {}, "search": {}, "paper_search": None, "complete": False}
    clock = Clock(args.time_limit)
    return run_and_report(lambda: run_stages(args, result, out, clock), result, markdown, out / "scaling.md",
                          [out / "scaling.json"])


def run_and_report(stages: Callable[[], None], result: dict, table: Callable[[dict], str], markdown_file: Path,
                   json_files: Sequence[Path]) -> int:
    """Run ``stages`` (which fill ``result``) until done or out of time, write ``result`` to ``json_files`` and its
    ``table`` to ``markdown_file``, print the table; the exit status (``INCOMPLETE`` when cut)."""
    try:
        stages()
        result["complete"] = True
    except OutOfTime:
        pass
    for path in json_files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
    markdown_file.write_text(table(result))
    print(table(result), end="")
    if not result["complete"]:
        print(f"incomplete, run again (finished stages are kept in {markdown_file.parent})")
        return INCOMPLETE
    return 0


if __name__ == "__main__":
    sys.exit(main())
