"""Does the supernet rank? Supernet variants against the same architectures trained alone, as one resumable study.

    python benchmarks/supernet_ranking.py --study configs/ranking/synthetic.yaml --jobs_per_gpu 8 --num_workers 2 \\
        --time_limit 450
    python benchmarks/supernet_ranking.py --study configs/ranking/camvid_proxy.yaml --root ../shared/datasets/camvid \\
        --jobs_per_gpu 4 --time_limit 450
    python benchmarks/supernet_ranking.py --study configs/ranking/synthetic.yaml --cpu_jobs 2   # CPU: hours

A study YAML names a supernet config, the data, the panel (``ranking_panel``), the standalone recipe
(``StandaloneRecipe``), the reference seeds and the supernet variants (``name: [dotted overrides of hyctas fit]``).
Stages (``--stages``, in order):

- ``references``: every panel member trained alone for each seed (``train_standalone``). Results are cached
  under ``OUT/references/KEY/HASH.json`` (KEY: recipe + data), so another study or rerun with the same recipe
  and data trains nothing again.
- ``teacher``: the fixed teacher of ``distill: teacher`` variants (``{teacher}`` in their overrides): the study's
  ``teacher.checkpoint``, or ``hyctas fit --config teacher.config`` trained into ``OUT/teacher``.
- ``supernets``: ``hyctas fit`` of each variant (``OUT/variants/NAME``), resuming from ``last.ckpt``.

These three run as one pool of concurrent processes: ``--jobs_per_gpu`` per visible GPU (``CUDA_VISIBLE_DEVICES``
set per process, the CPU cores shared out among the slots; the teacher and the supernets start first, the
longest first) or ``--cpu_jobs`` on a CPU. Then:

- ``estimates``: the panel through each finished supernet (``estimate_panel``: BN recalibrated on training
  images, val mIoU), written to ``OUT/variants/NAME/estimates.json``.
- ``report``: per variant the random members' mean supernet mIoU, largest, smallest, Kendall tau and
  Spearman rho against the standalone references (mean over seeds), and the seed-to-seed tau of the references
  (the ceiling); ``OUT/report.md`` and ``OUT/report.json``.

Every stage skips finished work and resumes unfinished work, so with ``--time_limit`` (seconds for this
command) the study is cut into commands of bounded length: workers stop with a checkpoint before the limit and
the next run of the same command continues. A line ``study incomplete`` at the end means: run it again.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import yaml

from hyctas_lightning.ranking import (
    RankingReport,
    ReferenceCache,
    StandaloneRecipe,
    correlate,
    estimate_panel,
    load_references,
    references_for,
)
from hyctas_lightning.search_space import Architecture, SearchSpace, ranking_panel
from hyctas_lightning.training import train_standalone

STAGES = ("references", "teacher", "supernets", "estimates", "report")
Job = Tuple[str, List[str], Path]  # name, command, log file
WAITS = "waits for the teacher"
MARGIN_S = 45  # a worker's own deadline ends this long before the command's, to save and exit


class Study:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.config = yaml.safe_load(Path(args.study).read_text())
        self.out = Path(args.out or Path("runs/ranking") / Path(args.study).stem)
        self.out.mkdir(parents=True, exist_ok=True)
        self.data = self.config["data"]
        if args.root:
            self.data["init_args"]["root"] = str(Path(args.root).resolve())
        if args.num_workers is not None:  # how data is loaded, not which: the reference cache keeps its key
            self.data["init_args"]["num_workers"] = args.num_workers
        base = yaml.safe_load(Path(self.config["supernet_config"]).read_text())
        self.space = SearchSpace.from_dict(base["model"]["init_args"].get("space") or {})
        self.panel = ranking_panel(self.space, **self.config.get("panel", {}))
        # other definitions of "largest", trained alone with the seed-0 recipe to see which one trains best
        self.candidates = {f"largest[{c['largest_op']},{c['largest_node']}]":
                           dataclasses.replace(self.space, **c).largest()
                           for c in self.config.get("largest_candidates", [])}
        self.recipes = {seed: StandaloneRecipe(**{**self.config.get("recipe", {}), "seed": seed})
                        for seed in self.config.get("reference_seeds", [0])}
        self.deadline = time.time() + args.time_limit if args.time_limit else None
        self.incomplete: List[str] = []

    # ------------------------------------------------------------------ scheduling
    def slots(self) -> List[Dict[str, str]]:
        """Environment of each concurrent worker slot: ``--jobs_per_gpu`` per GPU, going round the GPUs, or
        ``--cpu_jobs`` CPU slots."""
        gpus = torch.cuda.device_count()
        if gpus:
            slots = self.args.jobs_per_gpu * gpus
            threads = str(max(1, (os.cpu_count() or slots) // slots))  # the CPU cores shared out, not oversubscribed
            return [{"CUDA_VISIBLE_DEVICES": str(g), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
                    for _ in range(self.args.jobs_per_gpu) for g in range(gpus)]
        threads = str(max(1, self.args.cpu_threads))
        return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} for _ in range(self.args.cpu_jobs)]

    def seconds_left(self) -> Optional[float]:
        return None if self.deadline is None else self.deadline - time.time()

    def run_pool(self, jobs: List[Job]) -> None:
        """Run ``(name, argv, log)`` jobs on the slots; no new job starts in the last minutes of the limit, and
        each gets its own deadline before the command's (``--worker_seconds``, or a ``Deadline`` callback)."""
        free, running, failed = self.slots(), {}, []
        queue = list(jobs)
        while queue or running:
            left = self.seconds_left()
            while queue and free and (left is None or left > 2 * MARGIN_S):
                name, argv, log = queue.pop(0)
                env = {**os.environ, **(slot := free.pop(0))}
                if left is not None:
                    argv = argv + deadline_args(argv, left - MARGIN_S)
                log.parent.mkdir(parents=True, exist_ok=True)
                print(f"[{time.strftime('%H:%M:%S')}] start {name} on {slot} (log: {log})", flush=True)
                with log.open("a") as f:
                    running[name] = (subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env), slot, log)
            if queue and not running:
                self.incomplete.append(f"{len(queue)} jobs not started (time limit)")
                break
            time.sleep(1)
            for name, (process, slot, log) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[name]
                free.append(slot)
                if process.returncode != 0:
                    failed.append(f"{name} (exit {process.returncode}): {log}")
                print(f"[{time.strftime('%H:%M:%S')}] end {name}: exit {process.returncode}", flush=True)
        if failed:
            raise SystemExit("failed:\n" + "\n".join(failed))

    # ------------------------------------------------------------------ references
    def cache(self, seed: int) -> ReferenceCache:
        return ReferenceCache(self.out, self.recipes[seed], self.data)

    def reference_jobs(self) -> List[Job]:
        jobs = []
        for seed in self.recipes:
            cache = self.cache(seed)
            members = {**self.panel, **(self.candidates if seed == min(self.recipes) else {})}
            for name, arch in members.items():
                if cache.get(arch) is None:
                    argv = [sys.executable, __file__, "--study", self.args.study, "--out", str(self.out),
                            "--worker_reference", name, "--worker_seed", str(seed)]
                    if self.args.root:
                        argv += ["--root", self.args.root]
                    if self.args.num_workers is not None:
                        argv += ["--num_workers", str(self.args.num_workers)]
                    jobs.append((f"reference {name} seed {seed}", argv, cache.run_dir(arch) / "train.log"))
        return jobs

    def worker_reference(self, name: str, seed: int, seconds: Optional[float]) -> None:
        result = train_standalone({**self.panel, **self.candidates}[name], self.cache(seed), max_time_s=seconds)
        print(f"{name} seed {seed}: " + ("unfinished, rerun to resume" if result is None else
                                          f"val mIoU {100 * result['miou']:.2f}"), flush=True)

    # ------------------------------------------------------------------ teacher and supernets
    def data_config(self) -> Path:
        """The study's data as a config file for ``hyctas fit``."""
        path = self.out / "data.yaml"
        path.write_text(yaml.safe_dump({"data": self.data}))
        return path

    def teacher_path(self) -> Path:
        spec = self.config.get("teacher") or {}
        return Path(spec["checkpoint"]) if "checkpoint" in spec else self.out / "teacher" / "checkpoints" / "last.ckpt"

    def teacher_finished(self) -> bool:
        spec = self.config.get("teacher") or {}
        return "checkpoint" in spec or self.run_finished(self.out / "teacher")

    def teacher_jobs(self) -> List[Job]:
        spec = self.config.get("teacher") or {}
        if "config" not in spec or self.teacher_finished():
            return []
        folder = self.out / "teacher"
        return [("teacher", [sys.executable, "-m", "hyctas_lightning.cli", "fit", "--config", spec["config"],
                             "--config", str(self.data_config()), *run_folder(folder)], folder / "fit.log")]

    def variants(self) -> Dict[str, List[str]]:
        variants = self.config["variants"]
        wanted = self.args.variants.split(",") if self.args.variants else list(variants)
        unknown = [v for v in wanted if v not in variants]
        if unknown:
            raise SystemExit(f"--variants: {unknown} not in the study's variants {list(variants)}")
        teacher = str(self.teacher_path())
        return {name: [str(a).replace("{teacher}", teacher) for a in variants[name] or []] for name in wanted}

    def variant_dir(self, name: str) -> Path:
        return self.out / "variants" / name

    def finished(self, name: str) -> bool:
        return self.run_finished(self.variant_dir(name))

    @staticmethod
    def run_finished(folder: Path) -> bool:
        """Whether the ``hyctas fit`` run in ``folder`` reached its ``max_steps``."""
        last, config = folder / "checkpoints" / "last.ckpt", folder / "config.yaml"
        if not (last.is_file() and config.is_file()):
            return False
        wanted = yaml.safe_load(config.read_text())["trainer"]["max_steps"]
        return torch.load(last, map_location="cpu", weights_only=False)["global_step"] >= wanted

    def max_steps(self, overrides: List[str]) -> int:
        """A variant's training steps: its ``--trainer.max_steps`` override, else the supernet config's."""
        if "--trainer.max_steps" in overrides:
            return int(overrides[overrides.index("--trainer.max_steps") + 1])
        return int(yaml.safe_load(Path(self.config["supernet_config"]).read_text())["trainer"]["max_steps"])

    def supernet_jobs(self) -> List[Job]:
        """``hyctas fit`` of every unfinished variant, the longest first (the study waits for the last one)."""
        data_config = self.data_config()
        jobs = []
        variants = self.variants()
        for name in sorted(variants, key=lambda n: -self.max_steps(variants[n])):
            overrides = variants[name]
            folder = self.variant_dir(name)
            if self.finished(name):
                continue
            if any("{teacher}" in str(a) for a in self.config["variants"][name] or []) and not self.teacher_finished():
                self.incomplete.append(f"{name} {WAITS}")
                continue
            argv = [sys.executable, "-m", "hyctas_lightning.cli", "fit", "--config", self.config["supernet_config"],
                    "--config", str(data_config), *overrides, *run_folder(folder)]
            jobs.append((f"supernet {name}", argv, folder / "fit.log"))
        return jobs

    def train(self, stages: List[str]) -> None:
        """The training stages' jobs in one pool: the teacher and the supernets first (one per GPU, as the slots
        go round the GPUs), the standalone references filling the other slots."""
        jobs = [*(self.teacher_jobs() if "teacher" in stages else []),
                *(self.supernet_jobs() if "supernets" in stages else []),
                *(self.reference_jobs() if "references" in stages else [])]
        self.run_pool(jobs)
        waited = [m for m in self.incomplete if m.endswith(WAITS)]
        if "supernets" in stages and waited and self.teacher_finished():  # their teacher is ready: start them now
            self.incomplete = [m for m in self.incomplete if m not in waited]
            self.run_pool(self.supernet_jobs())
        missing = sum(self.cache(s).get(a) is None for s in self.recipes for a in self.panel.values())
        if "references" in stages and missing:
            self.incomplete.append(f"{missing} standalone references unfinished")
        if "teacher" in stages and not self.teacher_finished():
            self.incomplete.append("teacher unfinished")
        unfinished = [n for n in self.variants() if not self.finished(n)]
        if "supernets" in stages and unfinished:
            self.incomplete.append(f"supernets unfinished: {unfinished}")

    # ------------------------------------------------------------------ estimates and report
    def estimates(self) -> None:
        from hyctas_lightning.data.registry import build_datamodule
        from hyctas_lightning.training import SupernetModule

        device = "cuda" if torch.cuda.is_available() else "cpu"
        for name in self.variants():
            path = self.variant_dir(name) / "estimates.json"
            if path.is_file() or not self.finished(name):
                continue
            if (left := self.seconds_left()) is not None and left < 2 * MARGIN_S:
                self.incomplete.append("estimates left for the next run (time limit)")
                return
            module = SupernetModule.load_from_checkpoint(self.variant_dir(name) / "checkpoints" / "last.ckpt",
                                                         map_location=device)
            panel = ranking_panel(module.space, **self.config.get("panel", {}))
            start = time.perf_counter()
            scores = estimate_panel(module.supernet, panel, build_datamodule(self.data), module.hparams.num_classes,
                                    module.hparams.ignore_index, seed=self.config.get("panel", {}).get("seed", 0),
                                    **self.config.get("estimates", {}))
            path.write_text(json.dumps({"scores": scores, "panel": {n: a.to_dict() for n, a in panel.items()},
                                        "seconds": time.perf_counter() - start}, indent=1) + "\n")
            report = RankingReport(panel, scores)
            print(f"estimates {name}: random mean {100 * report.summary()['random_mean']:.2f}", flush=True)

    def reference_means(self) -> Tuple[Dict[str, float], float]:
        """Standalone mIoU per architecture hash, averaged over the seeds that have it; and the tau between the
        first two seeds over the random members (how reproducible the standalone ranking itself is)."""
        per_seed = [load_references(self.cache(seed).dir) for seed in self.recipes]
        means = {}
        for h in set().union(*per_seed):
            values = [r[h] for r in per_seed if h in r]
            means[h] = sum(values) / len(values)
        hashes = set.intersection(*(set(r) for r in per_seed)) if per_seed else set()
        ceiling = math.nan
        if len(per_seed) >= 2:
            names = [n for n, a in self.panel.items() if n.startswith("random") and a.hash in hashes]
            stats = correlate([per_seed[0][self.panel[n].hash] for n in names],
                              [per_seed[1][self.panel[n].hash] for n in names])
            ceiling = stats.kendall_tau if stats else math.nan
        return means, ceiling

    def report(self) -> None:
        means, ceiling = self.reference_means()
        rows, results = [], {"seed_to_seed_tau": ceiling, "device": device_name(), "variants": {}}
        for name, overrides in self.variants().items():
            path = self.variant_dir(name) / "estimates.json"
            if not path.is_file():
                continue
            estimates = json.loads(path.read_text())
            panel = {n: Architecture.from_dict(a) for n, a in estimates["panel"].items()}
            report = RankingReport(panel, estimates["scores"], references_for(panel, means))
            s = report.summary()
            results["variants"][name] = {"overrides": overrides, **report.to_dict()}
            rows.append(f"| {name} | {100 * s['random_mean']:.1f} ({100 * s['random_min']:.1f}-"
                        f"{100 * s['random_max']:.1f}) | {100 * s['largest']:.1f} | {100 * s['smallest']:.1f} | "
                        f"{s['kendall_tau']:.2f} [{s['kendall_ci'][0]:.2f}, {s['kendall_ci'][1]:.2f}] | "
                        f"{s['spearman_rho']:.2f} | {s['n']} |")
            print(f"\n== {name} ==\n{report.table()}", flush=True)
        standalone = [means[a.hash] for n, a in self.panel.items() if n.startswith("random") and a.hash in means]
        header = ["| variant | random sub-networks' supernet mIoU, mean (min-max) | largest | smallest | Kendall tau "
                  "[95% bootstrap] | Spearman rho | n |", "|---|---|---|---|---|---|---|"]
        footer = (f"\nStandalone (mean of seeds {list(self.recipes)}): random members' mean "
                  f"{100 * sum(standalone) / max(1, len(standalone)):.1f} mIoU over {len(standalone)}; seed-to-seed "
                  f"Kendall tau {ceiling:.2f} (the ceiling). Estimates measured on {device_name()}.")
        candidates = [f"{name}: {100 * means[a.hash]:.1f}" for name, a in self.candidates.items() if a.hash in means]
        if candidates:
            footer += "\nStandalone mIoU of candidate largest sub-networks: " + "; ".join(candidates) + "."
        text = "\n".join(header + rows) + "\n" + footer + "\n"
        (self.out / "report.md").write_text(text)
        (self.out / "report.json").write_text(json.dumps(results, indent=1) + "\n")
        print("\n" + text, flush=True)


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"


def run_folder(folder: Path) -> List[str]:
    """Overrides that put a ``hyctas fit`` run's logs and ``checkpoints/`` in ``folder``, resuming from its
    ``last.ckpt`` when there is one."""
    last = folder / "checkpoints" / "last.ckpt"
    return ["--trainer.default_root_dir", str(folder), "--trainer.logger.init_args.save_dir", str(folder),
            *(["--ckpt_path", str(last)] if last.is_file() else [])]


def deadline_args(argv: List[str], seconds: float) -> List[str]:
    """Arguments that stop a worker (this script) or a ``hyctas fit`` run after ``seconds``, with a checkpoint."""
    if "fit" in argv:
        return ["--trainer.callbacks+=hyctas_lightning.training.Deadline", "--trainer.callbacks.seconds",
                f"{seconds:.0f}"]
    return ["--worker_seconds", f"{seconds:.0f}"]


def parse(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", required=True, help="study YAML, e.g. configs/ranking/synthetic.yaml")
    p.add_argument("--out", default=None, help="study folder (default: runs/ranking/<study name>)")
    p.add_argument("--root", default=None, help="dataset root (overrides the study's data.init_args.root)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--variants", default=None, help="comma-separated subset of the study's variants")
    p.add_argument("--time_limit", type=float, default=None, help="seconds this command may run")
    p.add_argument("--jobs_per_gpu", type=int, default=4, help="concurrent trainings per GPU")
    p.add_argument("--cpu_jobs", type=int, default=1, help="concurrent jobs without a GPU")
    p.add_argument("--cpu_threads", type=int, default=1, help="torch threads per CPU job")
    p.add_argument("--num_workers", type=int, default=None,
                   help="loader processes of every training (overrides the study's data.init_args.num_workers)")
    p.add_argument("--worker_reference", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker_seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--worker_seconds", type=float, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    study = Study(args)
    if args.worker_reference:
        study.worker_reference(args.worker_reference, args.worker_seed, args.worker_seconds)
        return 0
    stages = args.stages.split(",")
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise SystemExit(f"--stages: unknown {sorted(unknown)}; choose from {', '.join(STAGES)}")
    if set(stages) & {"references", "teacher", "supernets"}:
        study.train(stages)
    for stage in ("estimates", "report"):
        if stage in stages:
            print(f"== {stage} ==", flush=True)
            getattr(study, stage)()
    if study.incomplete:
        print("study incomplete (rerun the same command to continue): " + "; ".join(study.incomplete))
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
