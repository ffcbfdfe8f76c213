"""The search journal: every evaluation appended to ``candidates.jsonl`` as it completes, so a killed search
loses nothing and a rerun replays it without recomputing; each record names the inputs that produced it, so
results of another supernet or other settings are never mixed in."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hyctas_lightning.fileio import atomic_write_text, json_digest, json_text, read_json, write_json
from hyctas_lightning.search_space import Architecture

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    """One evaluated architecture: all measurements, whether it met the limits, and where the time went.

    Args:
        arch: the architecture.
        measurements: every measured value by name (e.g. ``miou``, ``latency_ms``); None where it failed.
        feasible: whether the measurements meet the search's limits.
        generation: the NSGA-II generation that first evaluated it (0: the initial population).
        genes: its encoding in the search space (empty when it has another layer count).
        timing: seconds spent per part of its evaluation (e.g. calibration, validation, latency).
    """

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


INPUTS_FILE = "inputs.json"


def parse_journal(path: Path) -> Tuple[List[dict], bool]:
    """The records of a ``candidates.jsonl`` in file order, and whether its last line was left unfinished (a
    search writing it right now, or one a kill cut short); that line is not among the records. Any other line
    that does not parse raises a ``ValueError`` naming the file and line.

    Args:
        path: the journal (a missing file has no records).
    """
    path = Path(path)
    lines = path.read_text().splitlines() if path.is_file() else []
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            Candidate.from_dict(row)
        except (json.JSONDecodeError, KeyError, ValueError, TypeError) as e:
            if number == len(lines):
                return rows, True
            raise ValueError(f"{path}:{number}: corrupt journal line ({e}); remove it to re-evaluate that "
                             f"candidate") from None
        rows.append(row)
    return rows, False


def read_journal(path: Path) -> List[Candidate]:
    """Every candidate of a ``candidates.jsonl`` (the last record per architecture), without touching the file: safe
    on a search that is still running.

    Args:
        path: the journal.
    """
    rows, _ = parse_journal(path)
    return list({c.hash: c for c in map(Candidate.from_dict, rows)}.values())


def changed_inputs(before: Dict[str, Any], now: Dict[str, Any]) -> List[str]:
    """``key: before -> now`` for each input that differs (long values abbreviated).

    Args:
        before: the inputs a journal was measured with.
        now: the inputs of this run.
    """
    def short(value: Any) -> str:
        text = json.dumps(value, sort_keys=True, default=str)
        return text if len(text) <= 40 else text[:37] + "..."

    return [f"{k}: {short(before.get(k))} -> {short(now.get(k))}" for k in sorted(set(before) | set(now))
            if before.get(k) != now.get(k)]


def unused_folder(path: Path) -> Path:
    """Create and return ``path``, or ``path.2``, ``path.3``, ... if taken: what is set aside never replaces what was
    set aside before (the same inputs can go stale twice), even with two processes at it.

    Args:
        path: the folder wanted.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate, number = path, 1
    while True:
        try:
            candidate.mkdir()  # fails if it exists: no other process can have taken it meanwhile
            return candidate
        except FileExistsError:
            number += 1
            candidate = path.with_name(f"{path.name}.{number}")


class Journal:
    """Append-only JSON lines; reading tolerates a final line cut short by a kill.

    ``inputs`` describes what produces the measurements (the supernet's weights, the data, the calibration and
    validation images, the latency settings, the device). It is written to ``inputs.json`` beside the journal and its
    digest into every record, and a journal measured with other inputs is never mixed in: it is moved to
    ``stale/<digest>/`` (``stale/<digest>.2/`` and so on if that exists) and the search starts afresh,
    re-evaluating every candidate.

    Args:
        path: the JSON-lines file (created with its folder if missing).
        inputs: description of the measurement inputs (``runner.measurement_inputs``); None reads the journal as
            it is, without checking that it is current.
    """

    def __init__(self, path: Path, inputs: Optional[Dict[str, Any]] = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.inputs = json.loads(json.dumps(inputs, default=str)) if inputs is not None else None
        self.digest = json_digest(self.inputs) if self.inputs is not None else None
        if self.inputs is not None:
            self._set_aside_if_stale()
        self.records: Dict[str, Candidate] = {c.hash: c for c in map(Candidate.from_dict, self._rows())}

    @property
    def inputs_path(self) -> Path:
        return self.path.parent / INPUTS_FILE

    def _rows(self) -> List[dict]:
        """The journal's records; an unfinished last line is dropped from the file (it is evaluated again)."""
        rows, unfinished = parse_journal(self.path)
        if unfinished:
            log.warning("%s: ignoring the unfinished last line; it will be re-evaluated", self.path)
            atomic_write_text(self.path, "".join(self.path.read_text().splitlines(True)[:-1]))
        return rows

    def _set_aside_if_stale(self) -> None:
        """Move a journal measured with other inputs (or with unrecorded ones) to ``stale/``; record the inputs."""
        digests = {row.get("inputs") for row in self._rows()}
        if digests and digests != {self.digest}:
            old = next(iter(digests - {self.digest}), None) or "unrecorded"
            before = read_json(self.inputs_path, {})
            changes = "; ".join(changed_inputs(before, self.inputs)) if before else "inputs not recorded"
            stale = unused_folder(self.path.parent / "stale" / old)
            for file in (self.path, self.inputs_path):
                if file.exists():
                    file.replace(stale / file.name)
            log.warning("%s was measured with other inputs (%s): moved it to %s/ and starting a fresh journal, "
                        "every candidate is evaluated again", self.path, changes, stale)
        write_json(self.inputs_path, self.inputs, sort_keys=True)

    def get(self, arch_hash: str) -> Optional[Candidate]:
        return self.records.get(arch_hash)

    def append(self, candidate: Candidate) -> None:
        row = candidate.to_dict()
        if self.digest is not None:
            row["inputs"] = self.digest
        with self.path.open("a") as f:
            f.write(json_text(row) + "\n")
            f.flush()
        self.records[candidate.hash] = candidate

    def __len__(self) -> int:
        return len(self.records)

    def candidates(self) -> List[Candidate]:
        return list(self.records.values())
