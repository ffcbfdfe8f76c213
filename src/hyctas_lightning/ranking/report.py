"""The report of a ranking study (``benchmarks/supernet_ranking.py``): per supernet variant how well its estimates
rank the panel's random members against the same architectures trained alone, overall and within each branch
count; the baselines a supernet must beat (how well counting multiply-adds or parameters ranks them); the
leave-one-out tau of a surrogate fitted on the references; and the default variant, chosen by a written rule.

``report.json`` holds everything a reader needs and nothing large (no checkpoints, no images), so it can be
committed alone (``docs/ranking/<study>/report.json``); ``report_markdown`` renders its tables.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from hyctas_lightning.search_space import Architecture

from .correlation import kendall_tau
from .diagnosis import RankingReport
from .surrogate import fit_surrogate

BRANCHES = (1, 2, 3)


def _random(panel: Mapping[str, Architecture]) -> List[str]:
    return [n for n in panel if n.startswith("random")]


def _tau(names: Sequence[str], x: Mapping[str, float], y: Mapping[str, float]) -> float:
    names = [n for n in names if n in x and n in y]
    return kendall_tau([x[n] for n in names], [y[n] for n in names])


def taus_by_branches(panel: Mapping[str, Architecture], x: Mapping[str, float],
                     y: Mapping[str, float]) -> Dict[str, float]:
    """Kendall tau of ``x`` against ``y`` over the random members of each branch count (``{"1": tau, ...}``; NaN
    where fewer than two pairs or a constant side): whether a ranking holds inside one count, as the paper searches
    each count on its own (section 4.5), or only separates the counts.

    Args:
        panel: ``{name: architecture}``.
        x: ``{name: value}``, e.g. the supernet's estimates or multiply-adds.
        y: ``{name: standalone mIoU}``.
    """
    names = _random(panel)
    return {str(k): _tau([n for n in names if panel[n].num_branches == k], x, y) for k in BRANCHES}


def surrogate_loo_tau(panel: Mapping[str, Architecture], estimates: Mapping[str, float],
                      references: Mapping[str, float], costs: Mapping[str, Mapping[str, float]]) -> float:
    """Leave-one-out Kendall tau of the surrogate (supernet estimate, multiply-adds, parameters) fitted on the panel
    members trained alone, over the random members (NaN with too few references).

    Args:
        panel: ``{name: architecture}``.
        estimates: ``{name: supernet mIoU}``.
        references: ``{name: standalone mIoU}``.
        costs: ``{name: {"macs_g": ..., "params_m": ...}}``.
    """
    names = [n for n in panel if n in estimates and n in references and n in costs]
    randoms = [i for i, n in enumerate(names) if n.startswith("random")]
    if len(names) < 5 or len(randoms) < 3:
        return math.nan
    rows = [{"miou": estimates[n], **costs[n]} for n in names]
    return fit_surrogate(rows, [references[n] for n in names], loo_rows=randoms).loo_tau


def variant_entry(panel: Mapping[str, Architecture], estimates: Mapping[str, float],
                  references: Mapping[str, float], costs: Mapping[str, Mapping[str, float]],
                  overrides: Any = None) -> Dict[str, Any]:
    """One variant of ``report.json``: ``tau`` (Kendall, random members, against the standalone mean), ``tau_ci``
    (seeded bootstrap 95 % interval), ``spearman``, ``random_mean``/``random_min``/``random_max`` (supernet mIoU of
    the random members), ``largest``, ``smallest``, ``n``, ``tau_by_branches``, ``surrogate_loo_tau``, the
    variant's ``overrides`` and every member's two numbers.

    Args:
        panel: ``{name: architecture}``.
        estimates: ``{name: supernet mIoU}``.
        references: ``{name: standalone mIoU}`` (mean over the seeds).
        costs: ``{name: {"macs_g": ..., "params_m": ...}}``.
        overrides: how the variant was trained (its overrides of the supernet config).
    """
    report = RankingReport(dict(panel), dict(estimates), dict(references))
    entry = report.to_dict()  # summary once: its bootstrap interval is the costly part
    s = entry["summary"]
    return {"tau": s["kendall_tau"], "tau_ci": s["kendall_ci"], "spearman": s["spearman_rho"],
            "random_mean": s["random_mean"], "random_min": s["random_min"], "random_max": s["random_max"],
            "largest": s["largest"], "smallest": s["smallest"], "n": s["n"],
            "tau_by_branches": taus_by_branches(panel, estimates, references),
            "surrogate_loo_tau": surrogate_loo_tau(panel, estimates, references, costs),
            "overrides": overrides, "members": entry["members"]}


def baselines(panel: Mapping[str, Architecture], references: Mapping[str, float],
              costs: Mapping[str, Mapping[str, float]]) -> Tuple[Dict[str, float], Dict[str, Dict[str, float]]]:
    """What a supernet must beat: Kendall tau of multiply-adds and of parameters against the standalone results
    over the random members, overall (``{"macs": tau, "params": tau}``) and within each branch count.

    Args:
        panel: ``{name: architecture}``.
        references: ``{name: standalone mIoU}``.
        costs: ``{name: {"macs_g": ..., "params_m": ...}}``.
    """
    keys = {"macs": "macs_g", "params": "params_m"}
    values = {b: {n: c[k] for n, c in costs.items()} for b, k in keys.items()}
    overall = {b: _tau(_random(panel), v, references) for b, v in values.items()}
    return overall, {b: taus_by_branches(panel, v, references) for b, v in values.items()}


@dataclass(frozen=True)
class DefaultRule:
    """How a study picks its default variant, so no one picks by hand: among the variants whose random
    sub-networks reach ``min_random_mean`` supernet mIoU (estimates that are usable, not only ordered), the one of
    highest Kendall tau (ties: higher random mean, then name); if none reaches it, the highest tau of all. Weight
    sharing counts as ranking when that variant also reaches ``min_tau`` and beats both baselines.

    Args:
        min_random_mean: the random members' mean supernet mIoU an eligible variant reaches, in [0, 1].
        min_tau: the Kendall tau at which the default counts as ranking (the paper reports 0.51).
    """

    min_random_mean: float = 0.35
    min_tau: float = 0.5

    def choose(self, variants: Mapping[str, Mapping[str, Any]]) -> Optional[str]:
        """The default variant's name (None without a variant with a tau).

        Args:
            variants: ``report.json``'s ``variants``.
        """
        scored = {n: v for n, v in variants.items() if math.isfinite(v["tau"])}
        eligible = {n: v for n, v in scored.items() if v["random_mean"] >= self.min_random_mean} or scored
        if not eligible:
            return None
        return min(eligible, key=lambda n: (-eligible[n]["tau"], -eligible[n]["random_mean"], n))

    def ranks(self, entry: Mapping[str, Any], baseline: Mapping[str, float]) -> bool:
        """Whether weight sharing ranks with this variant.

        Args:
            entry: the variant's ``report.json`` entry.
            baseline: the baselines' taus.
        """
        best = max([t for t in baseline.values() if math.isfinite(t)], default=-1.0)
        return entry["tau"] >= self.min_tau and entry["tau"] > best and entry["random_mean"] >= self.min_random_mean


def study_report(panel: Mapping[str, Architecture], estimates: Mapping[str, Mapping[str, float]],
                 references: Mapping[str, float], costs: Mapping[str, Mapping[str, float]],
                 rule: DefaultRule = DefaultRule(), overrides: Optional[Mapping[str, Any]] = None,
                 **facts: Any) -> Dict[str, Any]:
    """``report.json`` of a study: ``default``, ``weight_sharing_ranks``, ``verdict``, ``variants`` (see
    ``variant_entry``), ``baselines`` (``{"macs": tau, "params": tau}``), ``baselines_by_branches``, the rule, the
    standalone mean of the random members and ``facts`` (e.g. the seed-to-seed tau, the device).

    Args:
        panel: ``{name: architecture}``.
        estimates: ``{variant: {name: supernet mIoU}}`` of the finished variants.
        references: ``{name: standalone mIoU}`` (mean over the seeds).
        costs: ``{name: {"macs_g": ..., "params_m": ...}}``.
        rule: how the default is chosen.
        overrides: ``{variant: overrides}``, recorded with each variant.
        facts: further entries of the report.
    """
    variants = {name: variant_entry(panel, est, references, costs, (overrides or {}).get(name))
                for name, est in estimates.items()}
    overall, by_branches = baselines(panel, references, costs)
    default = rule.choose(variants)
    ranks = default is not None and rule.ranks(variants[default], overall)
    standalone = [references[n] for n in _random(panel) if n in references]
    return {"default": default, "weight_sharing_ranks": ranks, "verdict": verdict(default, variants, overall, rule),
            "default_rule": asdict(rule), "variants": variants, "baselines": overall,
            "baselines_by_branches": by_branches,
            "standalone_mean": sum(standalone) / len(standalone) if standalone else math.nan,
            "references": len(standalone), **facts}


def verdict(default: Optional[str], variants: Mapping[str, Mapping[str, Any]], baseline: Mapping[str, float],
            rule: DefaultRule) -> str:
    """One sentence: whether weight sharing ranks, and with which variant, or plainly that it did not.

    Args:
        default: the default variant.
        variants: ``report.json``'s ``variants``.
        baseline: the baselines' taus.
        rule: the rule that chose the default.
    """
    if default is None:
        return "no variant has a Kendall tau yet (estimates or standalone references missing)"
    v = variants[default]
    numbers = (f"{default}: tau {v['tau']:.2f} (MACs {baseline['macs']:.2f}, params {baseline['params']:.2f}), "
               f"random sub-networks' mean supernet mIoU {100 * v['random_mean']:.1f}")
    if rule.ranks(v, baseline):
        return f"weight sharing ranks: {numbers}"
    return (f"weight sharing alone did not rank (tau >= {rule.min_tau}, above both baselines, random mean >= "
            f"{100 * rule.min_random_mean:.0f} needed): {numbers}; the surrogate objective (surrogate_miou) is the "
            f"fallback, leave-one-out tau {v['surrogate_loo_tau']:.2f}")


def _num(value: Optional[float], percent: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{100 * value:.1f}" if percent else f"{value:.2f}"


def ablation_means(ablations: Mapping[str, float], estimates: Mapping[str, float]) -> Dict[str, float]:
    """Mean supernet mIoU of the random members as they are (``members``) and of each ablation kind (``NAME:KIND``
    scores of ``search_space.ablation_panel``).

    Args:
        ablations: ``{"NAME:KIND": supernet mIoU}``.
        estimates: the variant's ``{name: supernet mIoU}`` of the panel.
    """
    kinds: Dict[str, List[float]] = {"members": [v for n, v in estimates.items() if n.startswith("random")]}
    for key, value in ablations.items():
        kinds.setdefault(key.split(":", 1)[1], []).append(value)
    return {kind: sum(values) / len(values) for kind, values in kinds.items() if values}


def report_markdown(report: Mapping[str, Any]) -> str:
    """The tables of ``report.json``: one row per variant (supernet mIoU of the random members, largest and
    smallest, Kendall tau with its interval, Spearman rho, tau within each branch count, the surrogate's
    leave-one-out tau), the baselines, and the default with its verdict.

    Args:
        report: a ``study_report``.
    """
    rows = ["| variant | random sub-networks' supernet mIoU, mean (min-max) | largest | smallest | Kendall tau "
            "[95% bootstrap] | Spearman rho | tau 1 / 2 / 3 branches | surrogate LOO tau | n |",
            "|---|---|---:|---:|---|---:|---|---:|---:|"]
    for name, v in report["variants"].items():
        by = " / ".join(_num(v["tau_by_branches"][str(k)]) for k in BRANCHES)
        mark = f"**{name}**" if name == report["default"] else name
        rows.append(f"| {mark} | {_num(v['random_mean'], True)} ({_num(v['random_min'], True)}-"
                    f"{_num(v['random_max'], True)}) | {_num(v['largest'], True)} | {_num(v['smallest'], True)} | "
                    f"{_num(v['tau'])} [{_num(v['tau_ci'][0])}, {_num(v['tau_ci'][1])}] | {_num(v['spearman'])} | "
                    f"{by} | {_num(v['surrogate_loo_tau'])} | {v['n']} |")
    b, bb = report["baselines"], report["baselines_by_branches"]
    rows += ["", "| baseline | Kendall tau | tau 1 / 2 / 3 branches |", "|---|---:|---|"]
    rows += [f"| {k} | {_num(b[k])} | {' / '.join(_num(bb[k][str(n)]) for n in BRANCHES)} |" for k in b]
    if report.get("ablations"):
        kinds = list(dict.fromkeys(k for means in report["ablations"].values() for k in means))
        rows += ["", "Random members' mean supernet mIoU as they are and with one choice swapped with the largest's "
                     "(`search_space.ablation_panel`):", "", "| variant | " + " | ".join(kinds) + " |",
                 "|---|" + "---:|" * len(kinds)]
        rows += [f"| {name} | " + " | ".join(_num(means.get(k), True) for k in kinds) + " |"
                 for name, means in report["ablations"].items()]
    rule = report["default_rule"]
    rows += ["", f"Default (highest tau among variants with random mean >= {100 * rule['min_random_mean']:.0f}): "
                 f"**{report['default']}**. {report['verdict'][0].upper()}{report['verdict'][1:]}."]
    return "\n".join(rows) + "\n"


__all__ = ["DefaultRule", "ablation_means", "baselines", "report_markdown", "study_report", "surrogate_loo_tau",
           "taus_by_branches", "variant_entry", "verdict"]
