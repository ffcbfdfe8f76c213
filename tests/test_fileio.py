"""Atomic writes, strict JSON and the folder lock: the low-level file helpers every writer uses."""
import json
import math
import multiprocessing
import os
import stat

import pytest

from hyctas_lightning.fileio import JSONFileError, atomic_open, json_text, read_json, write_json
from hyctas_lightning.locks import FileLock, LockHeld


def test_json_never_holds_nan_or_infinity(tmp_path):
    path = write_json(tmp_path / "a.json", {"tau": math.nan, "ci": (math.inf, -math.inf, 0.5), "n": 3,
                                            "nested": [{"x": float("nan")}], "name": "ok"})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"tau": None, "ci": [None, None, 0.5], "n": 3, "nested": [{"x": None}], "name": "ok"}
    assert json_text({"v": math.nan, "p": tmp_path}, default=str) == json.dumps({"v": None, "p": str(tmp_path)})


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "sub" / "state.json"
    write_json(path, {"step": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(path) as f:
            f.write('{"step": 2')  # half written, then the writer dies
            raise RuntimeError("killed")
    assert read_json(path) == {"step": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]  # no temporary file left behind


def test_written_files_get_the_permissions_of_a_plain_open(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_json(tmp_path / "x.json", [1])
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def _write_many(path: str, worker: int) -> None:
    for i in range(50):
        write_json(path, {"worker": worker, "i": i, "pad": "x" * 4000})


def test_concurrent_writers_never_leave_a_mixed_or_partial_file(tmp_path):
    path = tmp_path / "shared.json"
    workers = [multiprocessing.Process(target=_write_many, args=(str(path), w)) for w in range(3)]
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        if path.exists():
            assert read_json(path)["pad"] == "x" * 4000  # every read sees one writer's whole file
    for w in workers:
        w.join()
        assert w.exitcode == 0
    assert read_json(path)["i"] == 49 and [p.name for p in tmp_path.iterdir()] == ["shared.json"]


def test_a_truncated_json_file_is_named_in_one_clear_error(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"networks": {"a": 1')
    with pytest.raises(JSONFileError, match=r"results.json: not valid JSON \(invalid at line 1") as error:
        read_json(path)
    assert isinstance(error.value, ValueError) and error.value.__cause__ is None
    path.write_text("")
    with pytest.raises(JSONFileError, match="results.json: not valid JSON \\(empty\\)"):
        read_json(path)
    assert read_json(tmp_path / "missing.json", {}) == {}
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json")


def test_a_folder_lock_admits_one_holder_until_released(tmp_path):
    first = FileLock(tmp_path / "run" / ".lock").acquire()
    with pytest.raises(LockHeld, match=f"is held by pid {os.getpid()} on .* since ") as refused:
        FileLock(tmp_path / "run" / ".lock").acquire()
    assert refused.value.holder.startswith(f"pid {os.getpid()} on ")
    first.note("pid 1 on elsewhere: a job")  # handed on: the refusal names the new holder
    with pytest.raises(LockHeld, match="is held by pid 1 on elsewhere: a job"):
        FileLock(tmp_path / "run" / ".lock").acquire()
    first.release()
    with FileLock(tmp_path / "run" / ".lock") as again:
        assert again.held
    assert not again.held


def test_a_command_reading_a_truncated_json_file_names_it_in_one_line(tmp_path, capsys):
    from hyctas_lightning.cli import main
    from hyctas_lightning.cli.errors import EXIT_FILES

    (tmp_path / "manifest.json").write_text('{"config": {"run": "x"')  # a run folder whose manifest was cut short
    assert main(["pipeline", "--run", str(tmp_path), "--stages", "report"]) == EXIT_FILES
    err = capsys.readouterr().err.strip()
    assert "manifest.json: not valid JSON (invalid at line 1" in err and len(err.splitlines()) == 1
