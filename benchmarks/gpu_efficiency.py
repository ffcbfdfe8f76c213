"""How well training and search use the device present, one command: the real ``hyctas fit`` of a config for a
fixed time per sampling, then ``hyctas search`` of a few candidates, with where the time goes.

    python benchmarks/gpu_efficiency.py --config configs/camvid/supernet.yaml --data_root .camvid --seconds 120 \
        --samplings sandwich single --search_candidates 24 --json docs/bench/gpu_efficiency.json

- **fit**, once per ``--samplings`` entry (``model.init_args.sampling``; ``configured`` keeps the config's): the
  config with a ``TrainingEfficiency`` callback that leaves ``--warmup_steps`` steps out, times ``--seconds`` of
  training and stops it (epochs and steps unbounded otherwise). It reports images/s and sub-network passes/s (all
  GPUs), GPU busy (NVML samples every second: the mean, and the share of samples at or below 5 %; not available on
  a CPU or without nvidia-ml-py), and the shares of the wall clock spent waiting for data, in forward/backward
  passes, optimiser steps, validation, checkpoint writes (the stall of the loop, not the write: it runs in a
  thread) and the rest. The config's own callbacks, validation schedule and ``last.ckpt`` schedule stay;
  ``--checkpoint_every S`` writes ``last.ckpt`` every S seconds instead, so a short run shows what a write costs
  (the CamVid config writes every 10 minutes).
- **search**: ``hyctas search`` of ``--search_config`` on ``--ckpt`` (default: the first fit's ``last.ckpt``; what
  evaluating an architecture costs does not depend on its weights) with a starting population of
  ``--search_candidates`` and no further generation; the seconds per candidate and per phase (profile, build,
  latency, BN recalibration, validation: the journal's timings) as medians over the candidates.

Every figure comes from the files the runs wrote (``efficiency.json``, the search journal), never from printed
lines. Each stage keeps its result in ``--out`` and is skipped when the command runs again; with ``--time_limit S``
the running stage is stopped after S seconds, "incomplete, run again" printed and the exit status is 2. The table
goes to ``OUT/gpu_efficiency.md`` and the figures to ``OUT/gpu_efficiency.json`` (and ``--json``): ``{"gpu",
"command", "fit": {SAMPLING: {"images_per_s", "passes_per_s", "gpu_busy", "checkpoint_stall", ...}}, "search":
{"s_per_candidate", "phases": {...}, ...}}``. On a machine without a GPU it runs the same on the CPU (e.g.
``--config configs/demo/supernet.yaml --search_config configs/demo/search.yaml``).
"""
from __future__ import annotations

import argparse
import copy
import json
import shlex
import shutil
import statistics
import sys
from pathlib import Path
from typing import List, Optional

import torch
import yaml

from scaling import Clock, class_path, device_of, run_and_report, run_command, search_command

EFFICIENCY = "hyctas_lightning.training.TrainingEfficiency"
LAST_CHECKPOINT = "hyctas_lightning.training.LastCheckpoint"
CONFIGURED = "configured"  # a --samplings entry that keeps the config's sampler
RESULT = "result.json"
PHASE_NAMES = {"data_wait": "data wait", "forward_backward": "forward/backward", "optimizer": "optimizer",
               "validation": "validation", "checkpoint": "checkpoint", "other": "other"}


def fit_config(base: dict, run: Path, args: argparse.Namespace) -> dict:
    """``base`` (a ``hyctas fit`` config) as a timed run in ``run``: a ``TrainingEfficiency`` that stops training
    after ``args.seconds`` timed seconds, epochs and steps unbounded, and ``last.ckpt`` every
    ``args.checkpoint_every`` seconds when given."""
    config = copy.deepcopy(base)
    trainer = config.setdefault("trainer", {})
    callbacks = [c for c in trainer.get("callbacks") or [] if class_path(c) != EFFICIENCY]
    if args.checkpoint_every is not None:
        last = [c for c in callbacks if class_path(c) == LAST_CHECKPOINT]
        if not last:
            last = [{"class_path": LAST_CHECKPOINT}]
            callbacks.append(last[0])
        for c in last:
            kept = {k: v for k, v in (c.get("init_args") or {}).items() if k in ("dirpath", "weights_file")}
            c["init_args"] = {**kept, "every_seconds": args.checkpoint_every}
    callbacks.append({"class_path": EFFICIENCY, "init_args": {
        "warmup_steps": args.warmup_steps, "seconds": args.seconds, "path": str(run / "efficiency.json"),
        "synchronize": not args.no_sync}})
    trainer.update(callbacks=callbacks, max_epochs=-1, max_steps=-1, default_root_dir=str(run))
    return config


def checkpoint_schedule(config: dict) -> str:
    """When the config's ``last.ckpt`` is written, in words."""
    for c in config.get("trainer", {}).get("callbacks") or []:
        if class_path(c) == LAST_CHECKPOINT:
            init = c.get("init_args") or {}
            if init.get("every_seconds") is not None:
                return f"every {init['every_seconds']:g} s"
            if init.get("every_n_train_steps"):
                return f"every {init['every_n_train_steps']} steps"
            return f"every {init.get('every_n_epochs') or 1} epoch(s)"
    return "no LastCheckpoint"


def fit_stage(sampling: str, args: argparse.Namespace, out: Path, clock: Clock) -> dict:
    """One timed ``hyctas fit``: its ``efficiency.json`` and the command that ran."""
    run = out / "fit" / sampling
    if (run / RESULT).exists():
        return json.loads((run / RESULT).read_text())
    shutil.rmtree(run, ignore_errors=True)  # a cut run restarts: its rates are measured in one go
    run.mkdir(parents=True)
    config = fit_config(yaml.safe_load(Path(args.config).read_text()), run, args)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = ["fit", "--config", str(run / "config.yaml"), f"--trainer.accelerator={args.accelerator}",
               *([f"--model.init_args.sampling={sampling}"] if sampling != CONFIGURED else []),
               *([f"--data.init_args.root={args.data_root}"] if args.data_root else []), *args.fit_arg]
    wall = run_command(command, run / "fit.log", clock)
    summary = run / "efficiency.json"
    if not summary.exists():
        raise RuntimeError(f"{run}: no efficiency.json: training ended within the {args.warmup_steps} warm-up "
                           f"steps? (see {run / 'fit.log'})")
    row = {**json.loads(summary.read_text()), "checkpoint_schedule": checkpoint_schedule(config),
           "run_wall_s": round(wall, 1), "command": shlex.join(["hyctas", *command])}
    if not row["steps"]:
        raise RuntimeError(f"{run}: no timed step; raise --seconds or lower --warmup_steps (see {run / 'fit.log'})")
    (run / RESULT).write_text(json.dumps(row, indent=1) + "\n")
    return row


def candidate_phases(folder: Path) -> dict:
    """Seconds per candidate and per phase of a search folder's journal: medians (and means) over candidates."""
    timings = [json.loads(line)["timing"] for line in (folder / "candidates.jsonl").read_text().splitlines()
               if line.strip()]
    if not timings:
        raise RuntimeError(f"{folder}: the search evaluated no candidate")
    phases = sorted({phase for t in timings for phase in t}, key=lambda p: -sum(t.get(p, 0.0) for t in timings))
    totals = [sum(t.values()) for t in timings]
    return {"candidates": len(timings), "s_per_candidate": statistics.median(totals),
            "mean_s_per_candidate": statistics.fmean(totals),
            "phases": {p: statistics.median(t.get(p, 0.0) for t in timings) for p in phases},
            "mean_phases": {p: statistics.fmean(t.get(p, 0.0) for t in timings) for p in phases}}


def search_stage(ckpt: Path, args: argparse.Namespace, out: Path, clock: Clock) -> dict:
    """``hyctas search`` of ``args.search_candidates`` candidates (generation 0 only), started afresh."""
    folder = out / "search"
    if (folder / RESULT).exists():
        return json.loads((folder / RESULT).read_text())
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no supernet checkpoint to search; give --ckpt")
    shutil.rmtree(folder, ignore_errors=True)
    command = search_command(ckpt, 1, folder, args, args.search_candidates, 0)
    wall = run_command(command, out / "search.log", clock)
    row = {**candidate_phases(folder), "device": device_of(folder), "run_wall_s": round(wall, 1),
           "command": shlex.join(["hyctas", *command])}
    (folder / RESULT).write_text(json.dumps(row, indent=1) + "\n")
    return row


def percent(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def markdown(result: dict) -> str:
    """The tables of ``result`` (``gpu_efficiency.json``) as markdown."""
    lines = [f"command: `{result['command']}`", f"device: {result['gpu']}; torch {result['torch']}", ""]
    fits = result["fit"]
    if fits:
        first = next(iter(fits.values()))
        lines += [f"**Training** (`{result['config']}`: {first['wall_s']:.0f} s timed after {first['warmup_steps']} "
                  f"warm-up steps per sampling; shares of the wall clock; GPU busy: {first['gpu_note']})", "",
                  "| sampling | images/s | sub-network passes/s | GPU busy (idle samples) | "
                  + " | ".join(PHASE_NAMES.values()) + " | checkpoint writes |", "|---" + "|---:" * 10 + "|"]
        for sampling, r in fits.items():
            lines.append(f"| {sampling} | {r['images_per_s']:.1f} | {r['passes_per_s']:.1f} | "
                         f"{percent(r['gpu_busy'])} ({percent(r['gpu_idle_samples'])}) | "
                         + " | ".join(percent(r["phases"][p]) for p in PHASE_NAMES)
                         + f" | {r['checkpoint_writes']} ({r['checkpoint_schedule']}) |")
        if not any(r["checkpoint_writes"] for r in fits.values()):
            lines.append("\n(no checkpoint written while timed: --checkpoint_every S measures what a write costs)")
        lines.append("")
    search = result["search"]
    if search:
        lines += [f"**Search** (`{result['search_config']}`, {search['candidates']} candidates on "
                  f"{search['device']}): {search['s_per_candidate']:.3f} s per candidate (median; mean "
                  f"{search['mean_s_per_candidate']:.3f} s)", "", "| phase | median s | mean s |", "|---|---:|---:|"]
        lines += [f"| {p} | {s:.3f} | {search['mean_phases'][p]:.3f} |" for p, s in search["phases"].items()]
        lines.append("")
    if not result["complete"]:
        lines.append("(incomplete: run the command again)")
    return "\n".join(lines) + "\n"


def run_stages(args: argparse.Namespace, result: dict, out: Path, clock: Clock) -> None:
    for sampling in args.samplings:
        result["fit"][sampling] = fit_stage(sampling, args, out, clock)
    if args.search_candidates:
        ckpt = Path(args.ckpt) if args.ckpt else next(
            iter(sorted((out / "fit" / args.samplings[0]).rglob("last.ckpt"))), out / "fit" / "last.ckpt")
        result["search"] = search_stage(ckpt, args, out, clock)


def parse(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/camvid/supernet.yaml", help="the hyctas fit config")
    parser.add_argument("--search_config", default="configs/camvid/search.yaml")
    parser.add_argument("--data_root", default=None, help="the data module's root (default: the configs')")
    parser.add_argument("--seconds", type=float, default=120, help="timed seconds of each fit")
    parser.add_argument("--warmup_steps", type=int, default=10, help="steps of each fit before the timed ones")
    parser.add_argument("--samplings", nargs="+", default=["sandwich", "single"],
                        help=f"supernet samplers, one fit each ('{CONFIGURED}': the config's own)")
    parser.add_argument("--checkpoint_every", type=float, default=None,
                        help="write last.ckpt every this many seconds (default: the config's schedule)")
    parser.add_argument("--no_sync", action="store_true",
                        help="no device synchronisation at the phase boundaries (phases become host times)")
    parser.add_argument("--search_candidates", type=int, default=24, help="candidates searched (0: no search)")
    parser.add_argument("--ckpt", default=None, help="supernet checkpoint to search (default: the first fit's)")
    parser.add_argument("--out", default="runs/gpu_efficiency", help="folder of every stage's files")
    parser.add_argument("--json", default=None, help="also write the figures here (docs/bench/gpu_efficiency.json)")
    parser.add_argument("--accelerator", choices=("gpu", "cpu"), default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--time_limit", type=float, default=None, help="seconds; then stop and say 'run again'")
    parser.add_argument("--fit_arg", action="append", default=[], help="extra hyctas fit argument, as --fit_arg=--x=1")
    parser.add_argument("--search_arg", action="append", default=[], help="extra hyctas search argument (same form)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup_steps < 0:
        parser.error("--seconds: more than 0; --warmup_steps: 0 or more")
    if args.search_candidates and args.search_candidates < 4:
        parser.error("--search_candidates: 0 (no search) or at least 4 (the search's smallest population)")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name() if args.accelerator == "gpu" else "cpu"
    result = {"gpu": gpu, "command": f"python {shlex.join(sys.argv if argv is None else ['gpu_efficiency.py', *argv])}",
              "torch": torch.__version__, "config": args.config, "search_config": args.search_config,
              "fit": {}, "search": None, "complete": False}
    json_files = [out / "gpu_efficiency.json"] + ([Path(args.json)] if args.json else [])
    return run_and_report(lambda: run_stages(args, result, out, Clock(args.time_limit)), result, markdown,
                          out / "gpu_efficiency.md", json_files)


if __name__ == "__main__":
    sys.exit(main())
