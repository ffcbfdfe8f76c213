"""Stages ``rank`` (does the supernet rank? architectures across the latency range retrained and correlated with
the supernet's estimates), ``retrain`` (the search's top networks and the baselines) and ``evaluate``."""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List

from hyctas_lightning.ranking import rank_correlation

from .. import networks as nets
from ..context import RunContext
from ..manifest import PipelineError
from ..picks import spread_picks, top_picks
from .base import Stage

log = logging.getLogger(__name__)


class CheckRanking(Stage):
    """Up to ``rank.architectures`` feasible candidates spanning the search's latency range, each retrained with
    every seed; Kendall tau and Spearman rho between the supernet's mIoU estimates and the retrained mIoU."""

    name = "rank"
    reads = ("search",)
    writes = ("rank",)

    def inputs(self, ctx: RunContext) -> Dict[str, Any]:
        return {"rank": asdict(ctx.config.rank), "recipe": nets.recipe(ctx), "search": ctx.upstream("search")}

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        c = ctx.config.rank
        search = ctx.require("search")
        picks = spread_picks(list(nets.candidates(ctx).values()), set(search["front"]), c.architectures, c.front,
                             c.seed)
        if len(picks) < 3:
            raise PipelineError(f"stage 'rank': only {len(picks)} feasible candidates in the journal; a rank "
                                f"correlation needs 3 or more (search longer or raise cap.factor)")
        if len(picks) < c.architectures:
            log.warning("[rank] only %d feasible candidates for the %d architectures asked", len(picks),
                        c.architectures)
        networks = [nets.arch_network(ctx, f"rank_{i + 1:02d}", "rank", cand, list(c.seeds))
                    for i, (cand, _) in enumerate(picks)]
        nets.fit(ctx, networks)
        scores = nets.evaluate(ctx, networks)
        estimates = [n.estimate["miou"] for n in networks]
        outcomes = [scores[n.name]["miou_mean"] for n in networks]
        stats = rank_correlation(estimates, outcomes, bootstrap=c.bootstrap, seed=c.seed, confidence=c.confidence)
        rows = [{"name": n.name, "hash": n.key, "source": source, "estimate": n.estimate, **scores[n.name]}
                for n, (_, source) in zip(networks, picks)]
        ctx.save_results(rank={"requested": c.architectures, "seeds": list(c.seeds), "architectures": rows,
                               "statistics": stats.to_dict()})
        log.info("[rank] %d architectures: Kendall tau %.3f [%.3f, %.3f], Spearman rho %.3f", stats.n,
                 stats.kendall_tau, *stats.kendall_ci, stats.spearman_rho)
        return {"networks": [asdict(n) for n in networks], "kendall_tau": stats.kendall_tau}


class Retrain(Stage):
    """The search's ``retrain.top`` networks (``topk/``, most accurate first as ``searched_1..``) and the
    baselines, each trained with every seed under the shared recipe."""

    name = "retrain"
    reads = ("search",)

    def inputs(self, ctx: RunContext) -> Dict[str, Any]:
        return {"retrain": asdict(ctx.config.retrain), "recipe": nets.recipe(ctx), "search": ctx.upstream("search")}

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        c = ctx.config.retrain
        picks = top_picks(ctx.folder / "search", nets.candidates(ctx), c.top)
        networks = [nets.arch_network(ctx, f"searched_{i + 1}", "searched", cand, list(c.seeds))
                    for i, cand in enumerate(picks)]
        networks += [nets.baseline_network(ctx, b) for b in c.baselines]
        nets.fit(ctx, networks)
        return {"networks": [asdict(n) for n in networks]}

    def products(self, ctx: RunContext) -> List[Path]:
        return [nets.last_checkpoint(ctx, n, seed) for n in nets.networks_of(ctx, self.name) for seed in n.seeds]


class Evaluate(Stage):
    """``hyctas test`` of every retrained network and seed on ``evaluate.split``: per-seed and mean mIoU,
    per-class IoU, training throughput."""

    name = "evaluate"
    reads = ("retrain",)
    writes = ("classes", "split", "networks")

    def inputs(self, ctx: RunContext) -> Dict[str, Any]:
        return {"evaluate": asdict(ctx.config.evaluate), "retrain": ctx.upstream("retrain")}

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        networks = nets.networks_of(ctx, "retrain")
        scores = nets.evaluate(ctx, networks)
        classes = ctx.results().get("classes")
        entries = {}
        for n in networks:
            entry = {"kind": n.kind, "key": n.key, "estimate": n.estimate, **scores[n.name]}
            if not classes:  # no class list recorded by the supernet stage: the order the test logged
                classes = list(dict.fromkeys(k for s in entry["seeds"].values() for k in s["iou"]))
            entries[n.name] = entry
        previous = ctx.results().get("networks", {})
        for name, entry in entries.items():  # keep what the latency stage measured
            entry.update({k: v for k, v in previous.get(name, {}).items() if k not in entry})
        ctx.save_results(classes=classes, split=ctx.config.evaluate.split, networks=entries)
        return {"miou": {name: e["miou_mean"] for name, e in entries.items()}}
