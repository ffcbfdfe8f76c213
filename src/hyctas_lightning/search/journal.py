"""The search journal: every evaluation appended to ``candidates.jsonl`` as it completes, so a killed search
loses nothing and a rerun replays it without recomputing."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from hyctas_lightning.search_space import Architecture

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    """One evaluated architecture: all measurements, whether it met the limits, and where the time went."""

    arch: Architecture
    measurements: Dict[str, Optional[float]]
    feasible: bool
    generation: int
    genes: List[int] = field(default_factory=list)
    timing: Dict[str, float] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return self.arch.hash

    def to_dict(self) -> dict:
        return {"hash": self.hash, "generation": self.generation, "feasible": self.feasible,
                "measurements": self.measurements, "genes": self.genes, "timing": self.timing,
                "branches": self.arch.num_branches, "arch": self.arch.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Candidate:
        return cls(Architecture.from_dict(data["arch"]), data["measurements"], data["feasible"], data["generation"],
                   data.get("genes", []), data.get("timing", {}))


class Journal:
    """Append-only JSON lines; reading tolerates a final line cut short by a kill."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: Dict[str, Candidate] = {c.hash: c for c in self._read()}

    def _read(self) -> Iterator[Candidate]:
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield Candidate.from_dict(json.loads(line))
            except (json.JSONDecodeError, KeyError, ValueError) as e:
                if number == len(lines):
                    log.warning("%s: ignoring the unfinished last line (%s); it will be re-evaluated", self.path, e)
                    self._truncate(lines[:-1])
                else:
                    raise ValueError(f"{self.path}:{number}: corrupt journal line ({e}); remove it to re-evaluate "
                                     f"that candidate") from None

    def _truncate(self, lines: List[str]) -> None:
        self.path.write_text("".join(line + "\n" for line in lines))

    def get(self, arch_hash: str) -> Optional[Candidate]:
        return self.records.get(arch_hash)

    def append(self, candidate: Candidate) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(candidate.to_dict()) + "\n")
            f.flush()
        self.records[candidate.hash] = candidate

    def __len__(self) -> int:
        return len(self.records)

    def candidates(self) -> List[Candidate]:
        return list(self.records.values())
