"""Stages ``cap`` (the search's latency cap, timed on a reference network) and ``search`` (``hyctas search`` of the
trained supernet under it, resumed from its journal)."""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Sequence

import yaml

from hyctas_lightning.errors import EXIT_NOTHING_FEASIBLE, DeviceUnavailable
from hyctas_lightning.fileio import atomic_write_text, read_json, write_json
from hyctas_lightning.models import list_networks
from hyctas_lightning.search.journal import Candidate, read_journal

from .. import commands
from ..context import RunContext
from ..jobs import Job
from ..manifest import PipelineError
from .base import Stage, bench, size_key

log = logging.getLogger(__name__)


def timing(ctx: RunContext) -> Dict[str, Any]:
    """How the search times latency: the cap is timed the same way."""
    s = ctx.config.resolved_search()
    return {"variant": s.latency_variant, "size": list(s.latency_size), "backend": s.latency_backend,
            "warmup": s.latency_warmup, "runs": s.latency_runs}


class SetLatencyCap(Stage):
    """The cap is ``cap.factor`` x the reference network's latency, timed with ``hyctas bench`` in the search's
    own variant, size and protocol, on the GPU the search uses."""

    name = "cap"
    reads = ("supernet",)
    writes = ("cap",)

    def inputs(self, ctx: RunContext) -> Dict[str, Any]:
        return {"cap": asdict(ctx.config.cap), "timing": timing(ctx),
                "num_classes": ctx.manifest.outputs("supernet").get("num_classes")}

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        c, how = ctx.config.cap, timing(ctx)
        num_classes = ctx.require("supernet")["num_classes"]
        if how["backend"] == "cuda" and not ctx.gpus:
            raise DeviceUnavailable("stage 'cap': the search times latency on a GPU (latency_backend: cuda) but none "
                                    "is visible; on a CPU set search.overrides.latency_backend: cpu and a CPU variant")
        source = [*commands.bench_network(c.reference, list_networks()), "--num_classes", str(num_classes)]
        report = bench(ctx, source, ctx.folder / "cap", how["size"], [how["variant"]], how["warmup"], how["runs"],
                       how["backend"], ctx.gpus[:1])
        if report["failures"] or not report["rows"]:
            raise PipelineError(f"stage 'cap': {c.reference} could not be timed in variant {how['variant']}: "
                                f"{report['failures']}")
        reference_ms = report["rows"][0]["median_ms"]
        outputs = {"reference": c.reference, "factor": c.factor, "reference_ms": reference_ms,
                   "cap_ms": c.factor * reference_ms, "device": report["device"], **how}
        log.info("[cap] %g x %s's %.3f ms (%s, %s, %s) = %.3f ms", c.factor, c.reference, reference_ms,
                 how["variant"], size_key(how["size"]), report["device"], outputs["cap_ms"])
        ctx.save_results(cap=outputs)
        return outputs


def compact(candidate: Candidate, front: Sequence[str]) -> Dict[str, Any]:
    """A journal entry without its architecture and genes: what the report plots, small enough to commit."""
    return {"hash": candidate.hash, "generation": candidate.generation, "feasible": candidate.feasible,
            "branches": candidate.arch.num_branches, "front": candidate.hash in front,
            "measurements": candidate.measurements}


class SearchSupernet(Stage):
    """``hyctas search`` of the supernet under the cap, on its GPUs; the front, the top picks and ``candidates.json``
    (the journal without architectures, for the report)."""

    name = "search"
    reads = ("supernet", "cap")
    writes = ("search",)

    def inputs(self, ctx: RunContext) -> Dict[str, Any]:
        return {"search": ctx.config.resolved_search().to_dict(), "args": ctx.config.search.args,
                "cap": ctx.upstream("cap"), "supernet": ctx.upstream("supernet")}

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        supernet, cap = ctx.require("supernet"), ctx.require("cap")
        out = ctx.folder / "search"
        settings = ctx.config.resolved_search()
        settings.latency_cap_ms = cap["cap_ms"]
        atomic_write_text(out / "search.yaml", yaml.safe_dump({"search": settings.to_dict()}, sort_keys=False))
        data = dict(supernet["data"])
        data["init_args"] = {**data.get("init_args", {}), **ctx.config.data}
        gpus = ctx.gpus[: ctx.config.search.devices]
        argv = commands.command("search", commands.search(ctx.folder / supernet["checkpoint"], out / "search.yaml",
                                                          out, data, len(gpus)), ctx.config.search.args)
        ctx.using(len(gpus))
        if ctx.run_job(Job("search", argv, out / "search.log", "search", out), gpus) == EXIT_NOTHING_FEASIBLE:
            raise PipelineError(f"stage 'search': no feasible architecture under the cap of {cap['cap_ms']:.3f} ms "
                                f"(see {out / 'search.log'}); raise cap.factor")
        candidates = read_journal(out / "candidates.jsonl")
        front = [entry["hash"] for entry in read_json(out / "pareto.json")]
        history = read_json(out / "history.json")
        write_json(ctx.folder / "candidates.json", [compact(c, front) for c in candidates])
        summary = {"variant": settings.latency_variant, "size": list(settings.latency_size),
                   "backend": settings.latency_backend, "objectives": list(settings.objectives),
                   "population": settings.population, "generations": settings.generations,
                   "cap_ms": cap["cap_ms"], "evaluated": len(candidates),
                   "feasible": sum(c.feasible for c in candidates), "front": len(front),
                   "hypervolume": [row.get("hypervolume") for row in history]}
        ctx.save_results(search=summary)
        return {"journal": ctx.rel(out / "candidates.jsonl"), "evaluated": len(candidates), "front": front,
                "topk": sorted(p.stem for p in (out / "topk").glob("*.json"))}

    def products(self, ctx: RunContext) -> List[Path]:
        outputs, out = ctx.manifest.outputs(self.name), ctx.folder / "search"
        return [ctx.folder / outputs["journal"], *(out / "topk" / f"{stem}.json" for stem in outputs["topk"])]
