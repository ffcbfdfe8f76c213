"""Reading an offline W&B run back from disk, as ``wandb sync`` would upload it: the records of its ``.wandb`` file
(a LevelDB-style log of ``wandb_internal_pb2.Record`` protobufs) and the files it wrote."""
from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7  # the file's ':W&B' magic and version; then every chunk's checksum (4), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> List[Any]:
    """Every record of a ``.wandb`` file, chunks reassembled."""
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if pos + HEADER + length > len(data):  # the writer is still at it
            break
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, FIRST):
            pending = chunk
        elif kind in (MIDDLE, LAST):
            pending += chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


@dataclass
class OfflineRun:
    folder: Path
    history: List[Dict[str, Any]] = field(default_factory=list)
    config: Dict[str, Any] = field(default_factory=dict)
    artifacts: List[Any] = field(default_factory=list)

    @property
    def files(self) -> Path:
        return self.folder / "files"

    def rows_with(self, key: str) -> List[Dict[str, Any]]:
        return [row for row in self.history if key in row]

    def media(self, key: str) -> Dict[str, Any]:
        """The last logged value of a media key (``_type``, ``path``, ...), its sub-keys flattened by W&B."""
        prefix = key + "/"
        rows = [row for row in self.history if any(k.startswith(prefix) for k in row)]
        assert rows, f"nothing logged under {key}; keys: {sorted({k for r in self.history for k in r})}"
        return {k[len(prefix):]: v for k, v in rows[-1].items() if k.startswith(prefix)}

    def table(self, key: str) -> Dict[str, Any]:
        """The last table logged under ``key``, as its JSON file in the run's ``files/``."""
        entry = self.media(key)
        assert entry["_type"] == "table-file", entry
        return json.loads((self.files / entry["path"]).read_text())

    def artifact(self, type_: str, name_part: str = "") -> Any:
        found = [a for a in self.artifacts if a.type == type_ and name_part in a.name]
        assert found, f"no {type_} artifact '{name_part}'; have {[(a.type, a.name) for a in self.artifacts]}"
        return found[-1]


def finished_records(path: Path, timeout: float = 60.0) -> List[Any]:
    """The records of a finished run: W&B's writer process may still be flushing when ``finish()`` returns, so wait
    for the run's ``exit`` record."""
    deadline = time.monotonic() + timeout
    while True:
        found = records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in found):
            return found
        assert time.monotonic() < deadline, f"{path}: no exit record after {timeout} s (was the run finished?)"
        time.sleep(0.2)


def read_offline_run(save_dir: Path) -> OfflineRun:
    """The one offline run under ``save_dir/wandb/``: history rows (values decoded), config and artifacts."""
    folders = sorted(Path(save_dir).glob("wandb/offline-run-*"))
    assert len(folders) == 1, f"expected one offline run under {save_dir}/wandb, found {folders}"
    run_file, = folders[0].glob("run-*.wandb")
    run = OfflineRun(folders[0])
    for record in finished_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "config":
            run.config.update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "artifact":
            run.artifacts.append(record.artifact)
    return run
