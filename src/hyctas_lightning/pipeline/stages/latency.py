"""Stage ``latency``: ``hyctas bench`` of every retrained network, one at a time, in each variant and size."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Dict

from .. import networks as nets
from ..context import RunContext
from .base import Stage, bench, size_key


class MeasureLatency(Stage):
    """Parameters, multiply-adds and latency per variant and size of each retrained network (its first seed's
    checkpoint), on one GPU of the run or on the CPU."""

    name = "latency"
    reads = ("retrain",)
    writes = ("networks", "latency")

    def inputs(self, ctx: RunContext) -> Dict[str, Any]:
        return {"latency": asdict(ctx.config.latency), "retrain": ctx.upstream("retrain")}

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        c = ctx.config.latency
        device = "cuda" if ctx.gpus else "cpu"
        measured: Dict[str, Dict[str, Any]] = {}
        for n in nets.networks_of(ctx, "retrain"):
            ckpt = nets.last_checkpoint(ctx, n, n.seeds[0])
            entry: Dict[str, Any] = {"macs_g": {}, "latency": {}, "latency_failures": []}
            for size in c.sizes:
                report = bench(ctx, ["--ckpt", str(ckpt)], ctx.folder / "latency" / n.name / size_key(size), size,
                               c.variants, c.warmup, c.runs, device, ctx.gpus[:1])
                if report["rows"]:
                    entry["params_m"] = report["rows"][0]["params_m"]
                    entry["macs_g"][size_key(size)] = report["rows"][0]["macs_g"]
                entry["latency"][size_key(size)] = {r["variant"]: r["median_ms"] for r in report["rows"]}
                entry["latency_failures"] += [{**f, "size": size_key(size)} for f in report["failures"]]
                entry["device"] = report["device"]
            measured[n.name] = entry
        networks_results = ctx.results().get("networks", {})
        for name, entry in measured.items():
            networks_results.setdefault(name, {}).update(entry)
        ctx.save_results(networks=networks_results,
                         latency={"variants": list(c.variants), "sizes": [size_key(s) for s in c.sizes],
                                  "warmup": c.warmup, "runs": c.runs,
                                  "device": next(iter(measured.values()))["device"] if measured else None})
        return {"networks": sorted(measured)}
