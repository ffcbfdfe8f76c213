"""End to end: every stage of the pipeline on the synthetic streets on the CPU (configs/demo/pipeline.yaml), then a
rerun that finds everything finished, and a changed setting that is refused rather than silently reused."""
import json
from pathlib import Path

import pytest
import torch

from hyctas_lightning.cli import main
from hyctas_lightning.models import load_network
from hyctas_lightning.pipeline import STAGES

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "configs" / "demo" / "pipeline.yaml")


@pytest.mark.slow
def test_demo_pipeline_end_to_end_resumes_and_refuses_changed_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run = tmp_path / "run"
    base = ["pipeline", "--config", DEMO, "--run", str(run), "--zoo.out", str(tmp_path / "zoo")]
    assert main([*base, "--stages", "supernet", "cap", "search"]) == 0   # one sitting ...
    assert main(base) == 0                                              # ... and the next
    manifest = json.loads((run / "manifest.json").read_text())
    assert all(manifest["stages"][s]["status"] == "done" for s in STAGES)
    assert all(job["status"] == "done" for job in manifest["jobs"].values())
    results = json.loads((run / "results.json").read_text())

    # the rank study: 3 architectures x 1 seed, statistics from the retrained mIoU read from the test logs
    rank = results["rank"]
    assert len(rank["architectures"]) == 3 and rank["statistics"]["n"] == 3
    assert {a["source"] for a in rank["architectures"]} == {"front", "random"}
    assert all(0 <= a["miou_mean"] <= 1 and a["estimate"]["miou"] is not None for a in rank["architectures"])

    # retrain + evaluate: per seed and mean, per-class IoU with the data's class names; latency per variant
    nets = results["networks"]
    assert sorted(nets) == ["hyctas_s", "lraspp_mobilenet_v3_large", "searched_1"]
    assert sorted(nets["searched_1"]["seeds"]) == ["0", "1"] and sorted(nets["hyctas_s"]["seeds"]) == ["0"]
    s1 = nets["searched_1"]
    assert s1["miou_mean"] == pytest.approx(sum(v["miou"] for v in s1["seeds"].values()) / 2)
    assert set(s1["seeds"]["0"]["iou"]) <= set(results["classes"]) and len(results["classes"]) == 8
    assert all(set(n["latency"]["64x128"]) == {"fp32", "fp32-fold"} and n["params_m"] > 0 for n in nets.values())
    # a rank network shared with the retrain stage was trained once
    fits = [k for k in manifest["jobs"] if k.startswith("fit:")]
    assert len(fits) == len(set(fits)) == 3 + 5 - len({a["hash"] for a in rank["architectures"]} & {s1["key"]})

    # the zoo: compact checkpoints that load as trained networks, with metadata
    for name in ("searched_1", "lraspp_mobilenet_v3_large"):
        net, meta = load_network(tmp_path / "zoo" / f"{name}.ckpt")
        assert meta["weights"] == "fp16" and net(torch.randn(1, 3, 64, 128)).shape == (1, 8, 64, 128)
        assert json.loads((tmp_path / "zoo" / f"{name}.json").read_text())["role"]
    assert (tmp_path / "zoo" / "searched_1.arch.json").exists()
    report = (run / "REPORT.md").read_text()
    assert "Best searched network **searched_1**" in report and "Kendall tau" in report

    # rerun: every stage finished with the same inputs, nothing runs again
    attempts = {s: len(manifest["stages"][s]["attempts"]) for s in STAGES}
    capsys.readouterr()
    assert main(base) == 0
    again = json.loads((run / "manifest.json").read_text())
    assert {s: len(again["stages"][s]["attempts"]) for s in STAGES} == {**attempts, "report": attempts["report"] + 1}
    assert again["jobs"] == manifest["jobs"]

    # a changed setting of a finished stage stops the run before anything changes, naming the setting
    assert main([*base, "--rank.seeds", "[0, 1]"]) == 2
    assert "stage 'rank' finished with other inputs than now (changed: rank.seeds)" in capsys.readouterr().err
