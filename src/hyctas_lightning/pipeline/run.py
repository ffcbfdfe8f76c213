"""The pipeline's stages. Each runs ``hyctas`` sub-commands as processes with their logs in the run folder, reads
what they logged, and records its outputs in the manifest and ``results.json``; each resumes from its files."""
from __future__ import annotations

import json
import logging
import math
import shutil
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from hyctas_lightning.checkpoints import SUPERNET_KIND, read_checkpoint, save_compact
from hyctas_lightning.errors import EXIT_NOTHING_FEASIBLE
from hyctas_lightning.fileio import json_digest as digest
from hyctas_lightning.fileio import write_json
from hyctas_lightning.models import list_networks
from hyctas_lightning.ranking import rank_correlation
from hyctas_lightning.search.journal import Candidate, Journal

from .config import STAGES, Baseline, PipelineConfig
from .jobs import Job, JobResult, display, failure_summary, hyctas_argv, run_jobs, visible_gpus
from .logs import last_value, require_scalars
from .manifest import DONE, Manifest, PipelineError, file_digest
from .picks import spread_picks, top_picks

log = logging.getLogger(__name__)
REPORT_FILES = ("manifest.json", "results.json", "candidates.json")
OUT_OF_MEMORY = "out of memory"


@dataclass
class Network:
    """A network the run retrains: its report name, kind, folder key, model arguments and seeds.

    Args:
        name: its name in the report.
        kind: ``searched``, ``baseline`` or ``rank`` (one of the rank-correlation study's picks).
        key: its folder under ``train/RECIPE/`` (the architecture hash, or the baseline's label).
        model_args: command-line arguments that select it (``--model.init_args.arch PATH``).
        seeds: training seeds; one run each.
        args: extra command-line arguments of its own (a baseline's ``args``).
        estimate: the search's measurements of it (``miou``, ``latency_ms``, ...); None for baselines.
    """

    name: str
    kind: str  # "searched", "baseline" or "rank"
    key: str
    model_args: List[str]
    seeds: List[int]
    args: List[str] = field(default_factory=list)
    estimate: Optional[Dict[str, Any]] = None


def size_key(size: Sequence[int]) -> str:
    """``HxW`` text of an image size, as folder names and report keys use it.

    Args:
        size: (height, width).
    """
    return f"{int(size[0])}x{int(size[1])}"


class Pipeline:
    """One run of the method in ``config.run``.

    Args:
        config: the pipeline settings.
    """

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.run = Path(config.run)
        self.manifest = Manifest(self.run)
        self.results_path = self.run / "results.json"
        self._gpus: Optional[List[str]] = None
        self._stage = ""
        self._last_code = 0

    # ------------------------------------------------------------------ driving
    def execute(self, stages: Sequence[str] = STAGES, force: Sequence[str] = (),
                argv: Optional[List[str]] = None) -> None:
        """Run ``stages`` in the pipeline's order, skipping finished ones whose inputs are unchanged.

        Args:
            stages: the stages to run (any subset of ``STAGES``).
            force: stages to rerun although finished (their finished jobs are still reused).
            argv: the command line, recorded in the manifest.
        """
        unknown = [s for s in [*stages, *force] if s not in STAGES]
        if unknown:
            raise PipelineError(f"unknown stage(s) {unknown}; the stages are {', '.join(STAGES)}")
        self.config.validate(needs_files=any(s != "report" for s in stages))
        self.manifest.lock()
        chosen = [s for s in STAGES if s in stages]
        for name in chosen:  # before anything changes: a finished stage whose settings changed stops the run
            if name not in force and name != "report" and self.manifest.status(name) == DONE:
                self.manifest.check_inputs(name, self.inputs(name))
        self.argv = list(argv or [])
        self.manifest.invoked(self.argv, self.config.to_dict())
        for name in force:
            self.manifest.reset(name)
        for name in chosen:
            self._stage_run(name)
        publish = self.config.report.publish
        if "report" in stages and publish and Path(publish).resolve() != self.run.resolve():
            self.publish(Path(publish), [self.run / p for p in self.manifest.outputs("report")["report"]])

    def _stage_run(self, name: str) -> None:
        inputs = self.inputs(name)
        if self.manifest.status(name) == DONE and name != "report":
            self.manifest.check_inputs(name, inputs)
            log.info("[%s] finished before, skipped", name)
            return
        log.info("[%s] started", name)
        self._stage = name
        uses_gpu = bool(self.gpus) and name not in ("zoo", "report")
        self.manifest.begin(name, inputs, gpus=int(uses_gpu), argv=self.argv)
        try:
            outputs = getattr(self, f"stage_{name}")()
        except KeyboardInterrupt:
            self.manifest.finish(name, {}, error="interrupted")
            raise
        except Exception as e:
            self.manifest.finish(name, {}, error=str(e))
            raise
        self.manifest.finish(name, outputs)
        record = self.manifest.stage(name)
        log.info("[%s] finished in %.0f s (%.1f GPU-minutes in all)", name, record["attempts"][-1]["seconds"],
                 record["gpu_minutes"])

    @property
    def gpus(self) -> List[str]:
        """The GPUs this run spreads its processes over (``gpus`` of the visible ones)."""
        if self._gpus is None:
            visible = visible_gpus(self.config.device)
            if self.config.device == "cuda" and not visible:
                raise PipelineError("device: cuda, but no GPU is visible; use device: auto or cpu")
            wanted = self.config.gpus
            if wanted is not None:
                bad = [i for i in wanted if not 0 <= i < len(visible)]
                if bad:
                    raise PipelineError(f"gpus: {bad} out of range; {len(visible)} GPU(s) visible")
            self._gpus = visible if wanted is None else [visible[i] for i in wanted]
        return self._gpus

    def _using(self, gpus: int) -> None:
        """Record how many GPUs the running stage holds (its GPU-minutes count them)."""
        self.manifest.stage(self._stage)["attempts"][-1]["gpus"] = gpus
        self.manifest.save()

    # ------------------------------------------------------------------ inputs (what a finished stage depends on)
    def recipe(self) -> Dict[str, Any]:
        c = self.config.train
        return {"config": {f: file_digest(Path(f)) for f in c.config}, "args": c.args}

    def inputs(self, name: str) -> Dict[str, Any]:
        c, up = self.config, self.manifest.outputs_digest
        if name == "supernet":
            return {"config": {f: file_digest(Path(f)) for f in c.supernet.config}, "args": c.supernet.args,
                    "devices": c.supernet.devices}
        if name == "cap":
            return {"cap": asdict(c.cap), "timing": self._timing(),
                    "num_classes": self.manifest.outputs("supernet").get("num_classes")}
        if name == "search":
            return {"search": c.resolved_search().to_dict(), "args": c.search.args, "cap": up("cap"),
                    "supernet": up("supernet")}
        if name in ("rank", "retrain"):
            return {name: asdict(getattr(c, name)), "recipe": self.recipe(), "search": up("search")}
        if name == "evaluate":
            return {"evaluate": asdict(c.evaluate), "retrain": up("retrain")}
        if name == "latency":
            return {"latency": asdict(c.latency), "retrain": up("retrain")}
        if name == "zoo":
            return {"zoo": asdict(c.zoo), "evaluate": up("evaluate")}
        return {"report": asdict(c.report)}

    def _timing(self) -> Dict[str, Any]:
        s = self.config.resolved_search()
        return {"variant": s.latency_variant, "size": list(s.latency_size), "backend": s.latency_backend,
                "warmup": s.latency_warmup, "runs": s.latency_runs}

    # ------------------------------------------------------------------ helpers
    def results(self) -> Dict[str, Any]:
        return json.loads(self.results_path.read_text()) if self.results_path.exists() else {}

    def save_results(self, **sections: Any) -> Dict[str, Any]:
        results = {**self.results(), **sections}
        write_json(self.results_path, results)
        return results

    def rel(self, path: Path) -> str:
        return str(Path(path).relative_to(self.run))

    def data_args(self) -> List[str]:
        return [a for k, v in self.config.data.items()
                for a in (f"--data.init_args.{k}", v if isinstance(v, str) else json.dumps(v))]

    def require(self, stage: str) -> Dict[str, Any]:
        if self.manifest.status(stage) != DONE:
            raise PipelineError(f"stage '{self._stage}' needs the '{stage}' stage's results; run --stages {stage} "
                                f"first")
        return self.manifest.outputs(stage)

    def run_one(self, job: Job, gpus: Sequence[str]) -> None:
        """Run one sub-command (on ``gpus``, all visible to it); a failure stops the stage with its log's tail."""
        self.manifest.add_command(self._stage, display(job.argv))
        results = run_jobs([job], [",".join(gpus)] if gpus else [], on_tick=self._heartbeat)
        if not results[job.key].ok and results[job.key].returncode != EXIT_NOTHING_FEASIBLE:
            raise PipelineError(f"stage '{self._stage}' failed:\n{failure_summary([job], results)}")
        self._last_code = results[job.key].returncode

    def _heartbeat(self) -> None:
        self.manifest.heartbeat(self._stage)

    def run_many(self, jobs: Sequence[Job], per_gpu: int, what: str) -> None:
        """Run the unfinished ``jobs`` over the GPUs (``per_gpu`` each; one at a time on the CPU), recording each in
        the manifest as it ends; afterwards, any failure stops the stage naming every failed job."""
        todo = [job for job in jobs if not self.manifest.job_done(job.key)]
        for job in jobs:
            self.manifest.add_command(self._stage, display(job.argv))
        if not todo:
            return
        self._using(min(len(self.gpus), math.ceil(len(todo) / per_gpu)) if self.gpus else 0)
        log.info("[%s] %d %s to run (%d finished before)", self._stage, len(todo), what, len(jobs) - len(todo))

        def record(job: Job, result: JobResult) -> None:
            self.manifest.record_job(job.key, {"stage": self.manifest.job(job.key).get("stage", self._stage),
                                               "status": DONE if result.ok else "failed",
                                               "returncode": result.returncode, "seconds": result.seconds,
                                               "gpu": result.gpu, "command": display(job.argv),
                                               "log": self.rel(job.log)})

        results = run_jobs(todo, self.gpus, per_gpu if self.gpus else 1, on_done=record, on_tick=self._heartbeat)
        crowded = [job for job in todo if not results[job.key].ok and per_gpu > 1 and self.gpus
                   and OUT_OF_MEMORY in results[job.key].tail]
        if crowded:  # too big to share a GPU: once more, alone on one
            log.info("[%s] %d job(s) ran out of GPU memory beside others; retrying them one per GPU", self._stage,
                     len(crowded))
            results.update(run_jobs(crowded, self.gpus, 1, on_done=record, on_tick=self._heartbeat))
        failed = [job for job in todo if not results[job.key].ok]
        if failed:
            raise PipelineError(f"stage '{self._stage}': {len(failed)} of {len(todo)} job(s) failed (the others "
                                f"finished and are kept; rerun to retry):\n{failure_summary(failed, results)}")

    # ------------------------------------------------------------------ supernet
    def stage_supernet(self) -> Dict[str, Any]:
        c = self.config.supernet
        out = self.run / "supernet"
        last = out / "checkpoints" / "last.ckpt"
        gpus = self.gpus[: c.devices]
        args = ["fit", *[a for f in c.config for a in ("--config", f)], "--trainer.default_root_dir", str(out),
                *self.data_args(), *(["--trainer.devices", str(len(gpus))] if gpus else []), *c.args,
                *(["--ckpt_path", str(last)] if last.exists() else [])]
        self._using(len(gpus))
        self.run_one(Job("supernet", hyctas_argv(args), out / "fit.log", "supernet"), gpus)
        if not last.exists():
            raise PipelineError(f"stage 'supernet': {last} was not written; the config needs a ModelCheckpoint with "
                                f"save_last: true (see configs/camvid/supernet.yaml)")
        meta = read_checkpoint(last, SUPERNET_KIND)["hyctas"]
        scalars = require_scalars(out, "supernet training")
        data = meta.get("data") or {}
        outputs = {"checkpoint": self.rel(last), "sha256": file_digest(last), "num_classes": meta["num_classes"],
                   "classes": data.get("classes"), "data": {k: data[k] for k in ("class_path", "init_args")
                                                            if k in data},
                   "images_per_s": last_value(scalars, self.config.train.throughput_metrics),
                   "val": {k: v[-1][1] for k, v in scalars.items() if k.startswith("val/")}}
        self.save_results(classes=outputs["classes"], supernet={k: outputs[k] for k in ("images_per_s", "val")})
        return outputs

    # ------------------------------------------------------------------ cap
    def network_args(self, network: str) -> List[str]:
        """``hyctas bench`` arguments naming a registered network or an architecture file."""
        return ["--network", network] if network in list_networks() else ["--arch", network]

    def bench(self, source: List[str], out: Path, size: Sequence[int], variants: Sequence[str], warmup: int,
              runs: int, device: str, gpus: Sequence[str]) -> Dict[str, Any]:
        """``hyctas bench`` of one network into ``out`` (reused if it finished before); its ``bench.json``."""
        result = out / "bench.json"
        job = Job(f"bench:{self.rel(out)}", hyctas_argv(["bench", *source, "--size", *map(str, size), "--variants",
                                                         *variants, "--device", device, "--warmup", str(warmup),
                                                         "--runs", str(runs), "--out", str(out)]),
                  out / "bench.log", f"bench {self.rel(out)}")
        if not (self.manifest.job_done(job.key) and result.exists()):
            self.run_one(job, gpus)
            self.manifest.record_job(job.key, {"stage": self._stage, "status": DONE, "command": display(job.argv),
                                               "log": self.rel(job.log)})
        else:
            self.manifest.add_command(self._stage, display(job.argv))
        return json.loads(result.read_text())

    def stage_cap(self) -> Dict[str, Any]:
        c, timing = self.config.cap, self._timing()
        num_classes = self.require("supernet")["num_classes"]
        if timing["backend"] == "cuda" and not self.gpus:
            raise PipelineError("stage 'cap': the search times latency on a GPU (latency_backend: cuda) but none is "
                                "visible; on a CPU set search.overrides.latency_backend: cpu and a CPU variant")
        report = self.bench([*self.network_args(c.reference), "--num_classes", str(num_classes)], self.run / "cap",
                            timing["size"], [timing["variant"]], timing["warmup"], timing["runs"], timing["backend"],
                            self.gpus[:1])
        if report["failures"] or not report["rows"]:
            raise PipelineError(f"stage 'cap': {c.reference} could not be timed in variant {timing['variant']}: "
                                f"{report['failures']}")
        reference_ms = report["rows"][0]["median_ms"]
        outputs = {"reference": c.reference, "factor": c.factor, "reference_ms": reference_ms,
                   "cap_ms": c.factor * reference_ms, "device": report["device"], **timing}
        log.info("[cap] %g x %s's %.3f ms (%s, %s, %s) = %.3f ms", c.factor, c.reference, reference_ms,
                 timing["variant"], size_key(timing["size"]), report["device"], outputs["cap_ms"])
        self.save_results(cap=outputs)
        return outputs

    # ------------------------------------------------------------------ search
    def stage_search(self) -> Dict[str, Any]:
        supernet, cap = self.require("supernet"), self.require("cap")
        out = self.run / "search"
        settings = self.config.resolved_search()
        settings.latency_cap_ms = cap["cap_ms"]
        out.mkdir(parents=True, exist_ok=True)
        (out / "search.yaml").write_text(yaml.safe_dump({"search": settings.to_dict()}, sort_keys=False))
        data = dict(supernet["data"])
        data["init_args"] = {**data.get("init_args", {}), **self.config.data}
        gpus = self.gpus[: self.config.search.devices]
        args = ["search", "--ckpt", str(self.run / supernet["checkpoint"]), "--config", str(out / "search.yaml"),
                "--out", str(out), "--data", json.dumps(data), *(["--device", "cpu"] if not gpus else []),
                *(["--devices", str(len(gpus))] if len(gpus) > 1 else []), *self.config.search.args]
        self._using(len(gpus))
        self.run_one(Job("search", hyctas_argv(args), out / "search.log", "search"), gpus)
        if self._last_code == EXIT_NOTHING_FEASIBLE:
            raise PipelineError(f"stage 'search': no feasible architecture under the cap of {cap['cap_ms']:.3f} ms "
                                f"(see {out / 'search.log'}); raise cap.factor")
        candidates = Journal(out / "candidates.jsonl").candidates()
        front = [entry["hash"] for entry in json.loads((out / "pareto.json").read_text())]
        history = json.loads((out / "history.json").read_text())
        write_json(self.run / "candidates.json", [compact(c, front) for c in candidates])
        summary = {"variant": settings.latency_variant, "size": list(settings.latency_size),
                   "backend": settings.latency_backend, "objectives": list(settings.objectives),
                   "population": settings.population, "generations": settings.generations,
                   "cap_ms": cap["cap_ms"], "evaluated": len(candidates),
                   "feasible": sum(c.feasible for c in candidates), "front": len(front),
                   "hypervolume": [row.get("hypervolume") for row in history]}
        self.save_results(search=summary)
        return {"journal": self.rel(out / "candidates.jsonl"), "evaluated": len(candidates), "front": front,
                "topk": sorted(p.stem for p in (out / "topk").glob("*.json"))}

    # ------------------------------------------------------------------ training jobs
    def candidates(self) -> Dict[str, Candidate]:
        return {c.hash: c for c in Journal(self.run / "search" / "candidates.jsonl").candidates()}

    def arch_network(self, name: str, kind: str, candidate: Candidate, seeds: List[int]) -> Network:
        path = self.run / "train" / "arch" / f"{candidate.hash}.json"
        if not path.exists():
            candidate.arch.save(path)
        estimate = {k: v for k, v in candidate.measurements.items() if v is not None}
        return Network(name, kind, candidate.hash, ["--model.init_args.network", "null", "--model.init_args.arch",
                                                    str(path)], seeds, [], estimate)

    def baseline_network(self, baseline: Baseline) -> Network:
        if baseline.network in list_networks():
            model = ["--model.init_args.arch", "null", "--model.init_args.network", baseline.network]
        else:
            model = ["--model.init_args.network", "null", "--model.init_args.arch", baseline.network]
        return Network(baseline.label, "baseline", baseline.label, model,
                       list(baseline.seeds or self.config.retrain.seeds), list(baseline.args))

    def folder(self, network: Network, seed: int) -> Path:
        """``train/RECIPE/KEY/seedS``: keyed by the recipe's digest, so a changed recipe never resumes an old run."""
        return self.run / "train" / digest(self.recipe())[:8] / network.key / f"seed{seed}"

    def common_args(self, network: Network) -> List[str]:
        return [*[a for f in self.config.train.config for a in ("--config", f)], *network.model_args,
                *self.config.train.args, *network.args]

    def fit_job(self, network: Network, seed: int) -> Job:
        out = self.folder(network, seed)
        last = out / "checkpoints" / "last.ckpt"
        args = ["fit", *self.common_args(network), "--seed_everything", str(seed), "--trainer.default_root_dir",
                str(out), *self.data_args(), *(["--ckpt_path", str(last)] if last.exists() else [])]
        return Job(f"fit:{self.rel(out)}", hyctas_argv(args), out / "fit.log", f"fit {network.name} seed {seed}")

    def test_job(self, network: Network, seed: int) -> Job:
        out = self.folder(network, seed)
        args = ["test", *self.common_args(network), "--trainer.default_root_dir", str(out / "eval"),
                "--data.init_args.test_split", self.config.evaluate.split, *self.data_args(),
                *self.config.evaluate.args, "--ckpt_path", str(out / "checkpoints" / "last.ckpt")]
        return Job(f"test:{self.rel(out)}", hyctas_argv(args), out / "eval" / "test.log",
                   f"evaluate {network.name} seed {seed}")

    def fit(self, networks: Sequence[Network]) -> None:
        self.run_many([self.fit_job(n, s) for n in networks for s in n.seeds], self.config.train.jobs_per_gpu,
                      "trainings")

    def evaluate(self, networks: Sequence[Network]) -> Dict[str, Dict[str, Any]]:
        """Test every network and seed; per network: per-seed mIoU, per-class IoU and training images/s, the mean
        and the spread, all read from the logged files."""
        self.run_many([self.test_job(n, s) for n in networks for s in n.seeds], self.config.train.jobs_per_gpu,
                      "evaluations")
        return {n.name: self.scores(n) for n in networks}

    def scores(self, network: Network) -> Dict[str, Any]:
        seeds = {}
        for seed in network.seeds:
            out = self.folder(network, seed)
            test = require_scalars(out / "eval", f"hyctas test of {network.name} seed {seed}")
            if "test/mIoU" not in test:
                raise PipelineError(f"{out / 'eval'}: no test/mIoU logged; see {out / 'eval' / 'test.log'}")
            train = require_scalars(out, f"training of {network.name} seed {seed}")
            prefix = "test/IoU/"
            seeds[str(seed)] = {"miou": test["test/mIoU"][-1][1],
                                "iou": {k[len(prefix):]: v[-1][1] for k, v in test.items() if k.startswith(prefix)},
                                "images_per_s": last_value(train, self.config.train.throughput_metrics),
                                "train_seconds": self.manifest.job(f"fit:{self.rel(out)}").get("seconds"),
                                "folder": self.rel(out)}
        mious = [s["miou"] for s in seeds.values()]
        return {"seeds": seeds, "miou_mean": statistics.fmean(mious),
                "miou_std": statistics.stdev(mious) if len(mious) > 1 else None}

    def networks_of(self, stage: str) -> List[Network]:
        return [Network(**n) for n in self.require(stage)["networks"]]

    # ------------------------------------------------------------------ rank
    def stage_rank(self) -> Dict[str, Any]:
        c = self.config.rank
        search = self.require("search")
        picks = spread_picks(list(self.candidates().values()), set(search["front"]), c.architectures, c.front, c.seed)
        if len(picks) < 3:
            raise PipelineError(f"stage 'rank': only {len(picks)} feasible candidates in the journal; a rank "
                                f"correlation needs 3 or more (search longer or raise cap.factor)")
        if len(picks) < c.architectures:
            log.warning("[rank] only %d feasible candidates for the %d architectures asked", len(picks),
                        c.architectures)
        networks = [self.arch_network(f"rank_{i + 1:02d}", "rank", cand, list(c.seeds))
                    for i, (cand, _) in enumerate(picks)]
        self.fit(networks)
        scores = self.evaluate(networks)
        estimates = [n.estimate["miou"] for n in networks]
        outcomes = [scores[n.name]["miou_mean"] for n in networks]
        stats = rank_correlation(estimates, outcomes, bootstrap=c.bootstrap, seed=c.seed, confidence=c.confidence)
        rows = [{"name": n.name, "hash": n.key, "source": source, "estimate": n.estimate, **scores[n.name]}
                for n, (_, source) in zip(networks, picks)]
        self.save_results(rank={"requested": c.architectures, "seeds": list(c.seeds), "architectures": rows,
                                "statistics": stats.to_dict()})
        log.info("[rank] %d architectures: Kendall tau %.3f [%.3f, %.3f], Spearman rho %.3f", stats.n,
                 stats.kendall_tau, *stats.kendall_ci, stats.spearman_rho)
        return {"networks": [asdict(n) for n in networks], "kendall_tau": stats.kendall_tau}

    # ------------------------------------------------------------------ retrain, evaluate
    def stage_retrain(self) -> Dict[str, Any]:
        c = self.config.retrain
        self.require("search")
        picks = top_picks(self.run / "search", self.candidates(), c.top)
        networks = [self.arch_network(f"searched_{i + 1}", "searched", cand, list(c.seeds))
                    for i, cand in enumerate(picks)]
        networks += [self.baseline_network(b) for b in c.baselines]
        self.fit(networks)
        return {"networks": [asdict(n) for n in networks]}

    def stage_evaluate(self) -> Dict[str, Any]:
        networks = self.networks_of("retrain")
        scores = self.evaluate(networks)
        classes = self.results().get("classes")
        entries = {}
        for n in networks:
            entry = {"kind": n.kind, "key": n.key, "estimate": n.estimate, **scores[n.name]}
            if not classes:  # no class list recorded by the supernet stage: the order the test logged
                classes = list(dict.fromkeys(k for s in entry["seeds"].values() for k in s["iou"]))
            entries[n.name] = entry
        previous = self.results().get("networks", {})
        for name, entry in entries.items():  # keep what the latency stage measured
            entry.update({k: v for k, v in previous.get(name, {}).items() if k not in entry})
        self.save_results(classes=classes, split=self.config.evaluate.split, networks=entries)
        return {"miou": {name: e["miou_mean"] for name, e in entries.items()}}

    # ------------------------------------------------------------------ latency
    def stage_latency(self) -> Dict[str, Any]:
        c = self.config.latency
        networks = self.networks_of("retrain")
        device = "cuda" if self.gpus else "cpu"
        measured: Dict[str, Dict[str, Any]] = {}
        for n in networks:
            ckpt = self.folder(n, n.seeds[0]) / "checkpoints" / "last.ckpt"
            entry: Dict[str, Any] = {"macs_g": {}, "latency": {}, "latency_failures": []}
            for size in c.sizes:
                report = self.bench(["--ckpt", str(ckpt)], self.run / "latency" / n.name / size_key(size), size,
                                    c.variants, c.warmup, c.runs, device, self.gpus[:1])
                if report["rows"]:
                    entry["params_m"] = report["rows"][0]["params_m"]
                    entry["macs_g"][size_key(size)] = report["rows"][0]["macs_g"]
                entry["latency"][size_key(size)] = {r["variant"]: r["median_ms"] for r in report["rows"]}
                entry["latency_failures"] += [{**f, "size": size_key(size)} for f in report["failures"]]
                entry["device"] = report["device"]
            measured[n.name] = entry
        results = self.results()
        networks_results = results.get("networks", {})
        for name, entry in measured.items():
            networks_results.setdefault(name, {}).update(entry)
        self.save_results(networks=networks_results,
                          latency={"variants": list(c.variants), "sizes": [size_key(s) for s in c.sizes],
                                   "warmup": c.warmup, "runs": c.runs,
                                   "device": next(iter(measured.values()))["device"] if measured else None})
        return {"networks": sorted(measured)}

    # ------------------------------------------------------------------ zoo
    def stage_zoo(self) -> Dict[str, Any]:
        c, reference = self.config.zoo, self.config.retrain.reference
        self.require("evaluate")
        results = self.results()
        networks = {n.name: n for n in self.networks_of("retrain")}
        searched = [name for name, n in networks.items() if n.kind == "searched"]
        best = max(searched, key=lambda name: results["networks"][name]["miou_mean"])
        out = Path(c.out) if c.out else self.run / "zoo"
        written = {}
        for name, role in ((best, "best searched network"), (reference, "reference baseline")):
            written[name] = self.zoo_entry(networks[name], results["networks"][name], role, out)
        self.save_results(zoo={"folder": str(out), "entries": written})
        return {"folder": str(out), "entries": written}

    def zoo_entry(self, network: Network, result: Dict[str, Any], role: str, out: Path) -> Dict[str, Any]:
        """The network's best seed as compact weights, plus its architecture JSON (if it has one) and metadata."""
        seed = max(result["seeds"], key=lambda s: result["seeds"][s]["miou"])
        ckpt = self.folder(network, int(seed)) / "checkpoints" / "last.ckpt"
        stem = f"{self.config.zoo.prefix}{network.name}"
        written = save_compact(ckpt, out / f"{stem}.ckpt", self.config.zoo.max_mib)
        files = {"checkpoint": f"{stem}.ckpt", "weights": written["hyctas"]["weights"]}
        arch = written["hyctas"]["network"].get("arch")
        if arch:
            write_json(out / f"{stem}.arch.json", arch)
            files["architecture"] = f"{stem}.arch.json"
        meta = {"name": network.name, "role": role, "kind": network.kind, "seed": int(seed),
                "split": self.config.evaluate.split, "miou": result["seeds"][seed]["miou"],
                "miou_per_seed": {s: v["miou"] for s, v in result["seeds"].items()},
                "miou_mean": result["miou_mean"], "params_m": result.get("params_m"),
                "macs_g": result.get("macs_g"), "latency_ms": result.get("latency"),
                "latency_device": result.get("device"), "network": written["hyctas"]["network"],
                "classes": written["hyctas"].get("classes"), "recipe": self.config.train.config,
                "recipe_args": [*self.config.train.args, *network.args], "run": str(self.run), **files}
        write_json(out / f"{stem}.json", meta)
        log.info("[zoo] %s (%s, seed %s, %s weights) -> %s", network.name, role, seed, files["weights"], out)
        return {k: v for k, v in meta.items() if k in ("role", "seed", "miou", "checkpoint", "architecture",
                                                         "weights")}

    # ------------------------------------------------------------------ report
    def stage_report(self) -> Dict[str, Any]:
        from .report import write_report

        missing = [f for f in REPORT_FILES[1:] if not (self.run / f).exists()]
        if missing:
            raise PipelineError(f"stage 'report': {', '.join(missing)} missing in {self.run}; run the stages "
                                f"before the report")
        written = write_report(self.run, self.config.report.title, self.manifest.data, self.results(),
                               json.loads((self.run / "candidates.json").read_text()))
        return {"report": [self.rel(p) for p in written]}

    def publish(self, folder: Path, written: Sequence[Path]) -> None:
        """Copy the report and the files it is made from, so ``folder`` regenerates it on its own."""
        folder.mkdir(parents=True, exist_ok=True)
        for path in [*(self.run / f for f in REPORT_FILES), *written]:
            shutil.copy2(path, folder / path.name)
        log.info("[report] published to %s", folder)


def compact(candidate: Candidate, front: Sequence[str]) -> Dict[str, Any]:
    """A journal entry without its architecture and genes: what the report plots, small enough to commit."""
    return {"hash": candidate.hash, "generation": candidate.generation, "feasible": candidate.feasible,
            "branches": candidate.arch.num_branches, "front": candidate.hash in front,
            "measurements": candidate.measurements}


def run_pipeline(config: PipelineConfig, stages: Sequence[str] = STAGES, force: Sequence[str] = (),
                 argv: Optional[List[str]] = None) -> Pipeline:
    """Run (or resume) the pipeline; returns it, its manifest and results on disk in ``config.run``."""
    pipeline = Pipeline(config)
    pipeline.execute(stages, force, argv)
    return pipeline
