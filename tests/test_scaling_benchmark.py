"""benchmarks/scaling.py: its throughput config, its rates from a search's files, its time limit, and the whole
command on the CPU (gloo processes), cut and resumed."""
import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, TINY_DEMO_ARGS, load_benchmark, run_benchmark

scaling = load_benchmark("scaling")


def test_fit_config_times_the_last_steps_with_one_monitor_and_no_validation(tmp_path):
    base = yaml.safe_load((ROOT / "configs/camvid/supernet.yaml").read_text())
    config = scaling.fit_config(base, tmp_path, warmup=3, steps=7)
    trainer = config["trainer"]
    monitors = [c for c in trainer["callbacks"] if c["class_path"] == scaling.MONITOR]
    assert len(monitors) == 1 and monitors[0]["init_args"]["window_size"] == 8  # 7 intervals: the warm-up falls out
    assert trainer["max_steps"] == 10 and trainer["limit_val_batches"] == 0 and trainer["log_every_n_steps"] == 1
    assert trainer["logger"]["init_args"]["save_dir"] == str(tmp_path)
    assert [c["class_path"] for c in trainer["callbacks"]].count(scaling.LAST_CHECKPOINT) == 1
    assert base["trainer"]["max_epochs"] == 6  # the config itself untouched


def write_search(folder: Path, generations: list) -> None:
    """A search folder: ``generations`` = [(seconds at its end, [timing of each candidate])]."""
    folder.mkdir(parents=True)
    history, lines, done = [], [], 0
    for g, (seconds, timings) in enumerate(generations):
        done += len(timings)
        history.append({"generation": g, "evaluations": done, "seconds": seconds})
        lines += [json.dumps({"generation": g, "timing": t}) for t in timings]
    (folder / "history.json").write_text(json.dumps(history))
    (folder / "candidates.jsonl").write_text("\n".join(lines) + "\n")


def test_search_rates_leave_generation_zero_out(tmp_path):
    part = dict.fromkeys(scaling.PARTS, 0.5)  # 2.5 s per evaluation
    write_search(tmp_path / "s", [(100.0, [dict(part, latency=9.0)] * 4), (106.0, [part] * 4), (112.0, [part] * 2)])
    rates = scaling.search_rates(tmp_path / "s", n=2)
    assert rates["evaluations"] == 6 and rates["seconds"] == 12.0
    assert rates["evaluations_per_min"] == pytest.approx(30.0)
    assert rates["seconds_per_evaluation"]["latency"] == 0.5  # generation 0's slow latencies not counted
    assert rates["busy"] == pytest.approx(6 * 2.5 / (2 * 12.0))
    write_search(tmp_path / "only0", [(10.0, [{"latency": 1.0}] * 5)])  # no later generation: all of them
    assert scaling.search_rates(tmp_path / "only0", n=1)["evaluations_per_min"] == pytest.approx(30.0)


def test_markdown_gives_speedups_over_one_device():
    fit = {"images_per_s": 40.0, "batch_per_gpu": 16.0, "timed_steps": 40, "warmup_steps": 10, "wall_s": 60.0}
    search = {"evaluations": 32, "evaluations_per_min": 20.0, "busy": 0.9,
              "seconds_per_evaluation": dict.fromkeys(scaling.PARTS, 0.6)}
    result = {"command": "x", "device": "d", "torch": "t", "fit_config": "f", "search_config": "s", "complete": False,
              "fit": {"1": fit, "2": dict(fit, images_per_s=76.0)}, "search": {"1": search, "2": dict(search,
              evaluations_per_min=36.0)}, "paper_search": None}
    text = scaling.markdown(result)
    assert "| 2 | 76.0 | 38.0 | 1.90x (95%) | 60 |" in text
    assert "| 2 | 32 | 36.0 | 1.80x (90%) |" in text and "incomplete" in text


def test_a_stage_past_the_time_limit_is_stopped(tmp_path, monkeypatch):
    started = []
    popen = subprocess.Popen

    def recording(*args, **kwargs):
        started.append(popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(scaling.subprocess, "Popen", recording)
    start = time.monotonic()
    with pytest.raises(scaling.OutOfTime):  # a fit takes longer than a second to start at all
        scaling.run_command(["fit", "--config", str(ROOT / "configs/demo/supernet.yaml")], tmp_path / "fit.log",
                            scaling.Clock(1.0, min_stage=0))
    assert started[0].poll() is not None and time.monotonic() - start < 30
    with pytest.raises(scaling.OutOfTime):  # too little time left to start one
        scaling.run_command(["fit"], tmp_path / "other.log", scaling.Clock(5.0, min_stage=10))
    assert len(started) == 1


TINY = ["--accelerator", "cpu", "--gpus", "1", "2", "--fit_config", "configs/demo/supernet.yaml",
        "--search_config", "configs/demo/search.yaml", "--warmup", "2", "--steps", "3", "--search_population", "4",
        "--search_generations", "1", *TINY_DEMO_ARGS]


def benchmark(*args: str) -> subprocess.CompletedProcess:
    return run_benchmark("scaling", *TINY, *args)


@pytest.mark.slow
def test_scaling_table_on_two_gloo_processes_cut_and_resumed(tmp_path):
    out = ["--out", str(tmp_path)]
    cut = benchmark(*out, "--time_limit", "1")
    assert cut.returncode == scaling.INCOMPLETE and "incomplete, run again" in cut.stdout
    assert json.loads((tmp_path / "scaling.json").read_text())["complete"] is False

    done = benchmark(*out)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "scaling.json").read_text())
    assert result["complete"] and set(result["fit"]) == set(result["search"]) == {"1", "2"}
    for n, row in result["fit"].items():
        assert row["images_per_s"] > 0 and row["batch_per_gpu"] == 4
        assert (tmp_path / f"fit/gpus{n}/metrics.csv").exists()
    for n, row in result["search"].items():
        journal = (tmp_path / f"search/gpus{n}/candidates.jsonl").read_text().splitlines()
        assert row["evaluations"] == sum(json.loads(line)["generation"] >= 1 for line in journal) > 0
        assert all(row["seconds_per_evaluation"][p] >= 0 for p in scaling.PARTS) and 0 < row["busy"] <= 1.05
    assert json.loads((tmp_path / "search/gpus2/gpu_spread.json").read_text())["processes"] == 2
    assert "| 2 |" in (tmp_path / "scaling.md").read_text() and "Search" in done.stdout

    logs = {p: p.stat().st_mtime for p in tmp_path.rglob("*.log")}
    again = benchmark(*out)  # every stage done: nothing runs again
    assert again.returncode == 0 and {p: p.stat().st_mtime for p in tmp_path.rglob("*.log")} == logs
    assert json.loads((tmp_path / "scaling.json").read_text())["fit"] == result["fit"]
