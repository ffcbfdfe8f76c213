"""Which searched architectures get retrained: the search's top-K for the comparison with the baselines, and a
set spanning the latency range for the rank-correlation study."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Dict, List, Sequence, Set, Tuple

import numpy as np

from hyctas_lightning.search.journal import Candidate


def top_picks(search_dir: Path, candidates: Dict[str, Candidate], count: int) -> List[Candidate]:
    """The search's ``topk/`` members (the front's largest crowding distances: its extremes and spread-out middle),
    most accurate first, at most ``count``."""
    hashes = [path.stem.split("_")[-1] for path in sorted((Path(search_dir) / "topk").glob("*.json"))]
    chosen = [candidates[h] for h in hashes if h in candidates]
    return sorted(chosen, key=lambda c: -(c.measurements.get("miou") or 0.0))[:count]


def _evenly(items: Sequence[Candidate], k: int) -> List[Candidate]:
    """``k`` items at evenly spaced positions of a sorted sequence, both ends included."""
    if k <= 0 or not items:
        return []
    if k == 1:
        return [items[len(items) // 2]]
    positions = sorted({round(i * (len(items) - 1) / (k - 1)) for i in range(k)})
    return [items[p] for p in positions]


def spread_picks(candidates: Sequence[Candidate], front: Set[str], count: int, front_count: int,
                 seed: int) -> List[Tuple[Candidate, str]]:
    """Up to ``count`` feasible, measured candidates spanning the latency range: at most ``front_count`` front
    members evenly spaced in latency, then one random candidate from each of equally filled latency bins of the
    rest. Returns ``(candidate, "front" | "random")`` sorted by latency.

    Args:
        candidates: the search journal's candidates.
        front: hashes of the Pareto front.
        count: architectures wanted.
        front_count: at most this many of them from the front.
        seed: seed of the random picks.
    """
    measured = sorted((c for c in candidates if c.feasible and c.measurements.get("miou") is not None),
                      key=lambda c: (c.measurements["latency_ms"], c.hash))
    on_front = _evenly([c for c in measured if c.hash in front], min(front_count, count))
    taken = {c.hash for c in on_front}
    rest = [c for c in measured if c.hash not in taken]
    wanted = min(count - len(on_front), len(rest))
    rng = random.Random(seed)
    randoms = [rest[int(rng.choice(list(b)))] for b in np.array_split(np.arange(len(rest)), wanted) if len(b)] \
        if wanted > 0 else []
    picks = [(c, "front") for c in on_front] + [(c, "random") for c in randoms]
    return sorted(picks, key=lambda p: (p[0].measurements["latency_ms"], p[0].hash))
