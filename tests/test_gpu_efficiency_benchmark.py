"""benchmarks/gpu_efficiency.py: its timed fit config, its per-candidate search figures, and the whole command on
the CPU at tiny size, resumed without running anything again."""
import json
import subprocess

import pytest
import yaml

from helpers import ROOT, TINY_DEMO_ARGS, load_benchmark, run_benchmark

bench = load_benchmark("gpu_efficiency")


def test_the_timed_fit_keeps_the_config_and_adds_one_efficiency_callback(tmp_path):
    base = yaml.safe_load((ROOT / "configs/camvid/supernet.yaml").read_text())
    args = bench.parse(["--seconds", "60", "--warmup_steps", "3", "--checkpoint_every", "20"])
    config = bench.fit_config(base, tmp_path, args)
    callbacks = config["trainer"]["callbacks"]
    timers = [c for c in callbacks if c["class_path"] == bench.EFFICIENCY]
    assert len(timers) == 1 and timers[0]["init_args"] == {"warmup_steps": 3, "seconds": 60.0, "synchronize": True,
                                                             "path": str(tmp_path / "efficiency.json")}
    last, = [c for c in callbacks if c["class_path"] == bench.LAST_CHECKPOINT]
    assert last["init_args"] == {"every_seconds": 20.0} and bench.checkpoint_schedule(config) == "every 20 s"
    assert config["trainer"]["max_epochs"] == -1 and config["trainer"]["max_steps"] == -1  # the clock decides
    assert [c["class_path"] for c in callbacks[:2]] == [c["class_path"] for c in base["trainer"]["callbacks"]]
    assert bench.checkpoint_schedule(base) == "every 600 s" and "TrainingEfficiency" not in str(base)
    assert bench.fit_config(base, tmp_path, bench.parse([]))["trainer"]["callbacks"][0] == base["trainer"][
        "callbacks"][0]  # without --checkpoint_every, the config's own schedule


def test_seconds_per_candidate_are_medians_of_the_journal(tmp_path):
    timings = [{"latency": 0.8, "recalibration": 0.6, "build": 0.1}, {"latency": 0.4, "recalibration": 0.2,
               "build": 0.1}, {"latency": 0.5, "build": 0.1}]  # the last one over the latency cap
    (tmp_path / "candidates.jsonl").write_text("".join(json.dumps({"timing": t}) + "\n" for t in timings))
    result = bench.candidate_phases(tmp_path)
    assert result["candidates"] == 3 and result["s_per_candidate"] == pytest.approx(0.7)  # of 1.5, 0.7, 0.6
    assert list(result["phases"]) == ["latency", "recalibration", "build"]  # the costliest first
    assert result["phases"]["recalibration"] == pytest.approx(0.2)  # a candidate that skipped it counts 0
    assert result["mean_phases"]["latency"] == pytest.approx(1.7 / 3)


TINY = ["--config", "configs/demo/supernet.yaml", "--search_config", "configs/demo/search.yaml", "--accelerator",
        "cpu", "--seconds", "3", "--warmup_steps", "1", "--checkpoint_every", "1", "--search_candidates", "4",
        *TINY_DEMO_ARGS]


def benchmark(*args: str) -> subprocess.CompletedProcess:
    return run_benchmark("gpu_efficiency", *TINY, *args)


@pytest.mark.slow
def test_fit_and_search_on_the_cpu_then_nothing_runs_again(tmp_path):
    figures = tmp_path / "docs/bench/gpu_efficiency.json"
    done = benchmark("--out", str(tmp_path / "out"), "--json", str(figures))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(figures.read_text())
    assert result["gpu"] == "cpu" and result["complete"] and set(result["fit"]) == {"sandwich", "single"}
    for sampling, per_step in (("sandwich", 4), ("single", 1)):
        row = result["fit"][sampling]
        assert row["images_per_s"] > 0 and row["passes_per_s"] == pytest.approx(per_step * row["images_per_s"])
        assert row["gpu_busy"] is None and "not available" in row["gpu_note"]
        assert row["checkpoint_writes"] >= 1 and 0 < row["checkpoint_stall"] < 1
        assert sum(row["phases"].values()) == pytest.approx(1, abs=0.01) and row["phases"]["forward_backward"] > 0
        assert f"--model.init_args.sampling={sampling}" in row["command"]
    search = result["search"]
    assert search["candidates"] == 4 and search["s_per_candidate"] > 0
    assert {"latency", "recalibration", "validation", "build", "profile"} <= set(search["phases"])
    table = (tmp_path / "out/gpu_efficiency.md").read_text()
    assert "| sandwich |" in table and "| single |" in table and "s per candidate" in table

    logs = {p: p.stat().st_mtime for p in (tmp_path / "out").rglob("*.log")}
    again = benchmark("--out", str(tmp_path / "out"))
    assert again.returncode == 0 and {p: p.stat().st_mtime for p in (tmp_path / "out").rglob("*.log")} == logs
    assert json.loads((tmp_path / "out/gpu_efficiency.json").read_text())["fit"] == result["fit"]
