"""Does the supernet rank? Supernet variants against the same architectures trained alone, as one resumable study.

    python benchmarks/supernet_ranking.py --study configs/ranking/synthetic.yaml --jobs_per_gpu 8 --num_workers 2 \\
        --time_limit 450
    python benchmarks/supernet_ranking.py --study configs/ranking/camvid_proxy.yaml --root ../shared/datasets/camvid \\
        --out docs/ranking/camvid_proxy --work runs/ranking/camvid_proxy --jobs_per_gpu 4 --time_limit 450
    python benchmarks/supernet_ranking.py --study configs/ranking/synthetic.yaml --cpu_jobs 2   # CPU: hours

A study YAML names a supernet config, the data, the panel (``ranking_panel``), the standalone recipe
(``StandaloneRecipe``), the reference seeds, the rule that picks the default variant (``default_rule``,
``ranking.report.DefaultRule``) and the supernet variants. A variant is a list of dotted overrides of ``hyctas
fit``, or a mapping ``{overrides: [...], split: {key: branches, from: VARIANT, num_random: 1}}``: a split
(few-shot) supernet, one ``hyctas fit`` per part of the split (``sampling: split``), each warm-started from the
finished variant ``from`` (``training.WarmStart``) and estimating the panel members of its part.

Results (small JSON, ``--out``) and work (checkpoints, logs, ``--work``, default ``--out``) are kept apart, so the
results folder can be committed and a study on a fresh machine never redoes a finished unit:

- ``OUT/references/KEY/HASH.json``: one panel member trained alone with one seed (KEY: recipe + data);
- ``OUT/variants/NAME/estimates.json``: the panel estimated through a finished variant (a split variant's parts
  first in ``OUT/variants/NAME/parts/PART/estimates.json``);
- ``OUT/report.json`` and ``OUT/report.md`` (``ranking.report``): per variant tau with a bootstrap interval,
  Spearman rho, the random members' mean, largest, smallest, n, tau within each branch count and the surrogate's
  leave-one-out tau; the baselines (tau of MACs and of params); the default variant and the verdict.

Stages (``--stages``, in order): ``references`` (``train_standalone`` per member and seed), ``teacher`` (for
``distill: teacher`` variants: ``{teacher}`` in their overrides), ``supernets`` (``hyctas fit`` of each variant
and of each split part once its ``from`` variant is finished), all in one pool of concurrent processes
(``--jobs_per_gpu`` per visible GPU, or ``--cpu_jobs``); then ``estimates`` (also after each pool of trainings,
for the variants it finished, so their results are written before the next pool starts; ablations last) and
``report``. Every stage skips
finished work and resumes unfinished work, so with ``--time_limit`` (seconds for this command) the study is cut
into commands of bounded length; a line ``study incomplete`` at the end means: run it again.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import yaml

from hyctas_lightning.fileio import atomic_write_text, read_json, write_json
from hyctas_lightning.ranking import (
    ReferenceCache,
    StandaloneRecipe,
    correlate,
    estimate_panel,
    load_references,
    references_for,
)
from hyctas_lightning.ranking.finetune import Finetune, finetune_from
from hyctas_lightning.ranking.report import DefaultRule, ablation_means, report_markdown, study_report
from hyctas_lightning.ranking.surrogate import profile_features
from hyctas_lightning.search_space import SearchSpace, ablation_panel, ranking_panel
from hyctas_lightning.training import SPLITS, train_standalone

STAGES = ("references", "teacher", "supernets", "estimates", "report")
Job = Tuple[str, List[str], Path]  # name, command, log file
MARGIN_S = 45  # a worker's own deadline ends this long before the command's, to save and exit


class Study:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.config = yaml.safe_load(Path(args.study).read_text())
        self.out = Path(args.out or Path("runs/ranking") / Path(args.study).stem)
        self.work = Path(args.work or self.out)
        for folder in (self.out, self.work):
            folder.mkdir(parents=True, exist_ok=True)
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
        self.rule = DefaultRule(**self.config.get("default_rule", {}))
        self.specs = {name: variant_spec(name, spec, self.config["variants"])
                      for name, spec in self.config["variants"].items()}
        self.deadline = time.time() + args.time_limit if args.time_limit else None
        self.incomplete: List[str] = []
        self.failed: List[str] = []  # jobs that exited with an error: reported at the end, after what could go on

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
        self.failed += failed

    # ------------------------------------------------------------------ references
    def cache(self, seed: int) -> ReferenceCache:
        return ReferenceCache(self.out, self.recipes[seed], self.data, work=self.work)

    def reference_jobs(self) -> List[Job]:
        jobs = []
        for seed in self.recipes:
            cache = self.cache(seed)
            members = {**self.panel, **(self.candidates if seed == min(self.recipes) else {})}
            for name, arch in members.items():
                if cache.get(arch) is None:
                    argv = [sys.executable, __file__, "--study", self.args.study, "--out", str(self.out), "--work",
                            str(self.work), "--worker_reference", name, "--worker_seed", str(seed)]
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
        path = self.work / "data.yaml"
        atomic_write_text(path, yaml.safe_dump({"data": self.data}))
        return path

    def teacher_path(self) -> Path:
        spec = self.config.get("teacher") or {}
        return Path(spec["checkpoint"]) if "checkpoint" in spec else self.work / "teacher" / "checkpoints" / "last.ckpt"

    def teacher_finished(self) -> bool:
        """Whether the teacher is ready: given as a checkpoint, trained, or none to train."""
        spec = self.config.get("teacher") or {}
        return "config" not in spec or run_finished(self.work / "teacher")

    def teacher_jobs(self) -> List[Job]:
        spec = self.config.get("teacher") or {}
        if "config" not in spec or self.teacher_finished():
            return []
        folder = self.work / "teacher"
        return [("teacher", [sys.executable, "-m", "hyctas_lightning.cli", "fit", "--config", spec["config"],
                             "--config", str(self.data_config()), *run_folder(folder)], folder / "fit.log")]

    def variants(self) -> List[str]:
        """The variants this command works on (``--variants``, or all), with the variants their splits start from."""
        wanted = self.args.variants.split(",") if self.args.variants else list(self.specs)
        unknown = [v for v in wanted if v not in self.specs]
        if unknown:
            raise SystemExit(f"--variants: {unknown} not in the study's variants {list(self.specs)}")
        return list(dict.fromkeys([b for n in wanted if (b := self.base(n))] + wanted))

    def base(self, name: str) -> Optional[str]:
        """The variant whose supernet a split or estimate variant starts from (None for a plain one)."""
        spec = self.specs[name]
        return (spec["split"] or spec["estimate"] or {}).get("from")

    def overrides(self, name: str) -> List[str]:
        teacher = str(self.teacher_path())
        return [str(a).replace("{teacher}", teacher) for a in self.specs[name]["overrides"]]

    def run_dir(self, name: str, part: Any = None) -> Path:
        folder = self.work / "variants" / name
        return folder if part is None else folder / "parts" / str(part)

    def estimates_path(self, name: str, part: Any = None) -> Path:
        folder = self.out / "variants" / name
        return (folder if part is None else folder / "parts" / str(part)) / "estimates.json"

    def parts(self, name: str) -> Tuple[Any, ...]:
        split = self.specs[name]["split"]
        return SPLITS.get(split["key"]).parts(self.space) if split else ()

    def done(self, name: str, part: Any = None) -> bool:
        """Whether a variant (or a split part) has its estimates: the unit is finished for good."""
        return self.estimates_path(name, part).is_file()

    def bases_needed(self) -> set:
        """Variants whose checkpoint an unfinished split part or estimate variant still starts from."""
        return {self.base(n) for n in self.variants() if self.base(n)
                and not all(self.done(n, p) for p in (self.parts(n) or (None,)))}

    def fit_job(self, name: str, overrides: List[str], folder: Path) -> Job:
        argv = [sys.executable, "-m", "hyctas_lightning.cli", "fit", "--config", self.config["supernet_config"],
                "--config", str(self.data_config()), *overrides, *run_folder(folder)]
        label = name if folder == self.run_dir(name) else f"{name} part {folder.name}"
        return (f"supernet {label}", argv, folder / "fit.log")

    def supernet_jobs(self) -> List[Job]:
        """``hyctas fit`` of every variant and split part still to train and ready to, the longest first."""
        jobs, needed = [], self.bases_needed()
        for name in self.variants():
            spec, overrides = self.specs[name], self.overrides(name)
            if spec["estimate"]:  # trains nothing: estimated through its base's supernet
                continue
            if spec["split"]:
                base = self.run_dir(spec["split"]["from"])
                if not run_finished(base):  # loads the base checkpoint: once per variant, not per part
                    continue
                for part in self.parts(name):
                    folder = self.run_dir(name, part)
                    if self.done(name, part) or run_finished(folder):
                        continue
                    jobs.append(self.fit_job(name, split_overrides(spec["split"], part, base) + overrides, folder))
                continue
            if run_finished(self.run_dir(name)) or (self.done(name) and name not in needed):
                continue
            if any("{teacher}" in str(a) for a in spec["overrides"]) and not self.teacher_finished():
                continue
            jobs.append(self.fit_job(name, overrides, self.run_dir(name)))
        return sorted(jobs, key=lambda job: -self.max_steps(job[1]))

    def max_steps(self, argv: List[str]) -> int:
        """A run's training steps: its last ``--trainer.max_steps``, else the supernet config's."""
        given = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--trainer.max_steps"]
        if given:
            return int(given[-1])
        return int(yaml.safe_load(Path(self.config["supernet_config"]).read_text())["trainer"]["max_steps"])

    def train(self, stages: List[str]) -> None:
        """The training stages' jobs in pools: the teacher and the supernets first (one per GPU, as the slots go
        round the GPUs), the standalone references filling the other slots; then what a finished run let start
        (variants waiting for the teacher, split parts waiting for the variant they start from)."""
        started: set = set()
        while self.seconds_left() is None or self.seconds_left() > 2 * MARGIN_S:
            jobs = [*(self.teacher_jobs() if "teacher" in stages else []),
                    *(self.supernet_jobs() if "supernets" in stages else []),
                    *(self.reference_jobs() if "references" in stages else [])]
            jobs = [job for job in jobs if job[0] not in started]
            if not jobs:
                break
            started |= {job[0] for job in jobs}
            self.run_pool(jobs)
            if "estimates" in stages:
                self.estimate_trained()
        missing = sum(self.cache(s).get(a) is None for s in self.recipes for a in self.panel.values())
        if "references" in stages and missing:
            self.incomplete.append(f"{missing} standalone references unfinished")
        if "teacher" in stages and not self.teacher_finished():
            self.incomplete.append("teacher unfinished")
        unfinished = [n for n in self.variants() if not self.trained(n)]
        if "supernets" in stages and unfinished:
            self.incomplete.append(f"supernets unfinished: {unfinished}")

    def trained(self, name: str) -> bool:
        """Whether a variant (every part of a split one) is trained or already estimated."""
        if self.specs[name]["split"]:
            return all(self.done(name, p) or run_finished(self.run_dir(name, p)) for p in self.parts(name))
        if self.specs[name]["estimate"]:
            return self.done(name) or run_finished(self.run_dir(self.base(name)))
        return self.done(name) or run_finished(self.run_dir(name))

    # ------------------------------------------------------------------ estimates and report
    def estimates(self) -> None:
        """The panel through each trained variant (a split variant: each member through its part's supernet);
        then, with every estimate written, the ablations (the lesser result waits when time runs short)."""
        self.estimate_trained()
        for name in self.variants():
            if not self.done(name):
                self.incomplete.append(f"estimates of {name} wait for its training")
        for name in self.variants():
            if self.done(name):
                self.ablate(name)

    def estimate_trained(self) -> None:
        """Estimates of every variant (and split part) whose supernet is finished and that has none yet: run after
        each pool of trainings too, so a finished unit is written (and can be committed) before the next pool."""
        for name in self.variants():
            if self.done(name):
                continue
            split, estimate = self.specs[name]["split"], self.specs[name]["estimate"]
            for part in self.parts(name) or (None,):
                run = self.run_dir(self.base(name)) if estimate else self.run_dir(name, part)
                if self.done(name, part) or not run_finished(run):
                    continue
                if (left := self.seconds_left()) is not None and left < 2 * MARGIN_S:
                    note = "estimates left for the next run (time limit)"
                    self.incomplete += [note] if note not in self.incomplete else []
                    return
                members = None if part is None else {n for n, a in self.panel.items()
                                                     if SPLITS.get(split["key"]).part_of(a) == part}
                self.estimate(run, self.estimates_path(name, part), members,
                              finetune=estimate["finetune"] if estimate else None)
            if split and all(self.done(name, p) for p in self.parts(name)):
                merge_parts([read_json(self.estimates_path(name, p)) for p in self.parts(name)],
                            self.estimates_path(name))
            if self.done(name):
                scores = read_json(self.estimates_path(name))["scores"]
                randoms = [v for n, v in scores.items() if n.startswith("random")]
                print(f"estimates {name}: random mean {100 * sum(randoms) / max(1, len(randoms)):.2f}", flush=True)

    def ablations_path(self, name: str) -> Path:
        return self.out / "variants" / name / "ablations.json"

    def ablate(self, name: str) -> None:
        """With ``ablations: true`` in the study, the random members' ablations (``search_space.ablation_panel``)
        through a plain variant's supernet, once, while its finished checkpoint is in ``--work``."""
        if (not self.config.get("ablations") or self.specs[name]["split"] or self.specs[name]["estimate"]
                or self.ablations_path(name).is_file()
                or not run_finished(self.run_dir(name))):
            return
        if (left := self.seconds_left()) is not None and left < 2 * MARGIN_S:
            self.incomplete.append(f"ablations of {name} left for the next run (time limit)")
            return
        self.estimate(self.run_dir(name), self.ablations_path(name), None, ablate=True)

    def estimate(self, run: Path, path: Path, members: Optional[set], ablate: bool = False,
                 finetune: Optional[Finetune] = None) -> None:
        """Estimates of the panel (or of ``members`` of it, or with ``ablate`` of its ablations) through the
        supernet of the run folder ``run``, each member fine-tuned first with ``finetune``."""
        from hyctas_lightning.data.registry import build_datamodule
        from hyctas_lightning.training import SupernetModule

        device = "cuda" if torch.cuda.is_available() else "cpu"
        module = SupernetModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location=device)
        panel = ranking_panel(module.space, **self.config.get("panel", {}))
        panel = {n: a for n, a in panel.items() if members is None or n in members}
        if ablate:
            panel = ablation_panel(panel, module.space.largest())
        start = time.perf_counter()
        scores = estimate_panel(module.supernet, panel, build_datamodule(self.data), module.hparams.num_classes,
                                module.hparams.ignore_index, seed=self.config.get("panel", {}).get("seed", 0),
                                finetune=finetune, **self.config.get("estimates", {}))
        write_json(path, {"scores": scores, "panel": {n: a.to_dict() for n, a in panel.items()},
                          "seconds": time.perf_counter() - start, "device": device_name()})

    def reference_means(self) -> Tuple[Dict[str, float], float]:
        """Standalone mIoU per architecture hash, averaged over the seeds that have it; and the tau between the
        first two seeds over the random members (how reproducible the standalone ranking itself is)."""
        per_seed = [load_references(self.cache(seed).dir) for seed in self.recipes]
        means = {}
        for h in set().union(*per_seed):
            values = [r[h] for r in per_seed if h in r]
            means[h] = sum(values) / len(values)
        ceiling = math.nan
        if len(per_seed) >= 2:
            names = [n for n, a in self.panel.items() if n.startswith("random") and a.hash in per_seed[0]
                     and a.hash in per_seed[1]]
            stats = correlate([per_seed[0][self.panel[n].hash] for n in names],
                              [per_seed[1][self.panel[n].hash] for n in names])
            ceiling = stats.kendall_tau if stats else math.nan
        return means, ceiling

    def report(self) -> None:
        means, ceiling = self.reference_means()
        files = {n: read_json(self.estimates_path(n)) for n in self.variants() if self.done(n)}
        estimates = {n: f["scores"] for n, f in files.items()}
        # where the estimates were measured (the report itself needs no GPU and may be written anywhere)
        device = ", ".join(sorted({f["device"] for f in files.values() if f.get("device")})) or device_name()
        costs = {n: profile_features(a) for n, a in self.panel.items()}
        ablations = {n: ablation_means(read_json(self.ablations_path(n))["scores"], estimates[n])
                     for n in estimates if self.ablations_path(n).is_file()}
        candidates = {name: means[a.hash] for name, a in self.candidates.items() if a.hash in means}
        report = study_report(self.panel, estimates, references_for(self.panel, means), costs, self.rule,
                              {n: self.specs[n]["spec"] for n in estimates}, seed_to_seed_tau=ceiling,
                              reference_seeds=list(self.recipes), largest_candidates=candidates, ablations=ablations,
                              device=device, study=self.args.study)
        text = (report_markdown(report) + f"\nStandalone (mean of seeds {list(self.recipes)}): random members' mean "
                f"{100 * report['standalone_mean']:.1f} mIoU over {report['references']}; seed-to-seed Kendall tau "
                f"{ceiling:.2f} (the ceiling). Estimates measured on {device}.\n")
        if candidates:
            text += ("Standalone mIoU of candidate largest sub-networks: "
                     + "; ".join(f"{n}: {100 * v:.1f}" for n, v in candidates.items()) + ".\n")
        atomic_write_text(self.out / "report.md", text)
        write_json(self.out / "report.json", report)
        print("\n" + text, flush=True)


def variant_spec(name: str, spec: Any, variants: Dict[str, Any]) -> Dict[str, Any]:
    """A study variant as ``{overrides, split, estimate, spec}``, checked: overrides a list, a split's ``key``
    registered and its ``from`` a plain variant of the study, an estimate's ``from`` a plain variant and its
    ``finetune`` settings known."""
    if spec is None or isinstance(spec, list):
        return {"overrides": list(spec or []), "split": None, "estimate": None, "spec": spec or []}
    if not isinstance(spec, dict) or set(spec) - {"overrides", "split", "estimate"}:
        raise SystemExit(f"variants.{name}: a list of overrides, or a mapping with overrides and split, or with "
                         f"estimate alone")
    if "estimate" in spec:
        return {"overrides": [], "split": None, "estimate": estimate_spec(name, spec, variants), "spec": spec}
    split = dict(spec.get("split") or {})
    if split:
        if split.get("key") not in SPLITS or set(split) - {"key", "from", "num_random"}:
            raise SystemExit(f"variants.{name}.split: {{key: one of {SPLITS.names()}, from: VARIANT, num_random: N}}, "
                             f"got {split}")
        start = variants.get(split.get("from"), "missing")
        if not (start is None or isinstance(start, list)):
            raise SystemExit(f"variants.{name}.split.from: '{split.get('from')}' must name a variant of the study that "
                             f"is no split itself")
    return {"overrides": list(spec.get("overrides") or []), "split": split or None, "estimate": None, "spec": spec}


def estimate_spec(name: str, spec: Dict[str, Any], variants: Dict[str, Any]) -> Dict[str, Any]:
    """The ``estimate`` of a variant that trains nothing, ``{from: VARIANT, finetune: {steps, lr, ...}}`` (returned
    with ``finetune`` parsed into a :class:`Finetune`): the panel estimated through the finished supernet of the
    plain variant ``from`` with the fine-tuned estimate."""
    estimate = spec["estimate"]
    if set(spec) != {"estimate"} or not isinstance(estimate, dict) or set(estimate) != {"from", "finetune"}:
        raise SystemExit(f"variants.{name}: {{estimate: {{from: VARIANT, finetune: {{steps: N, lr: X}}}}}} and "
                         f"nothing else, got {spec}")
    start = variants.get(estimate["from"], "missing")
    if not (start is None or isinstance(start, list)):
        raise SystemExit(f"variants.{name}.estimate.from: '{estimate['from']}' must name a plain variant of the study")
    try:
        return {**estimate, "finetune": finetune_from(estimate["finetune"])}
    except (TypeError, ValueError) as e:
        raise SystemExit(f"variants.{name}.estimate.finetune: {e}") from None


def split_overrides(split: Dict[str, Any], part: Any, base: Path) -> List[str]:
    """``hyctas fit`` overrides of one part of a split: its sampler, and its weights from ``base``'s checkpoint."""
    args = {"key": split["key"], "part": part, **({"num_random": split["num_random"]} if "num_random" in split else {})}
    return ["--model.init_args.sampling", "split", "--model.init_args.sampler_args",
            yaml.safe_dump(args, default_flow_style=True).strip(),
            "--trainer.callbacks+=hyctas_lightning.training.WarmStart", "--trainer.callbacks.checkpoint",
            str(base / "checkpoints" / "last.ckpt")]


def merge_parts(parts: List[Dict[str, Any]], path: Path) -> None:
    """One estimates file of a split variant from its parts' (each holds the members of its part)."""
    merged = {"scores": {}, "panel": {}, "seconds": 0.0, "device": parts[0].get("device") if parts else None}
    for part in parts:
        merged["scores"].update(part["scores"])
        merged["panel"].update(part["panel"])
        merged["seconds"] += part.get("seconds", 0.0)
    write_json(path, merged)


def run_finished(folder: Path) -> bool:
    """Whether the ``hyctas fit`` run in ``folder`` reached its ``max_steps``."""
    last, config = folder / "checkpoints" / "last.ckpt", folder / "config.yaml"
    if not (last.is_file() and config.is_file()):
        return False
    wanted = yaml.safe_load(config.read_text())["trainer"]["max_steps"]
    return torch.load(last, map_location="cpu", weights_only=False)["global_step"] >= wanted


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
    p.add_argument("--out", default=None, help="results folder, JSON only (default: runs/ranking/<study name>)")
    p.add_argument("--work", default=None, help="folder of checkpoints and logs (default: --out)")
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
    if study.failed:
        print("failed (see the logs; a rerun retries them):\n" + "\n".join(study.failed))
        return 1
    if study.incomplete:
        print("study incomplete (rerun the same command to continue): " + "; ".join(study.incomplete))
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
