"""benchmarks/supernet_profile.py runs on the CPU at a tiny size and reports every variant it was asked for."""
from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT


def test_supernet_profile_reports_each_variant_and_layout_scores(tmp_path):
    out = tmp_path / "profile.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "supernet_profile.py"), "--size", "32", "32",
                    "--batch", "2", "--layers", "4", "--fch", "2", "--steps", "1", "--warmup", "1",
                    "--variants", "fp32", "fp32-fused-cl", "--out", str(out)], check=True, capture_output=True,
                   timeout=300)
    result = json.loads(out.read_text())
    assert set(result["train"]) == {"sandwich/fp32", "sandwich/fp32-fused-cl", "single/fp32", "single/fp32-fused-cl"}
    for row in result["train"].values():
        assert row["ms_per_step"] > 0 and row["passes_per_s"] > 0
        assert set(row["ops_per_step"]) == set(row["host_ms_per_phase"]) == {"forward", "backward", "optimizer"}
        assert all(phase["ops"] > 0 for phase in row["ops_per_step"].values())
        assert "convolution" in dict(row["top_ops"]) and len(row["top_ops"]) <= 25
    sandwich, single = result["train"]["sandwich/fp32"], result["train"]["single/fp32"]
    assert sandwich["ops_per_step"]["forward"]["ops"] > single["ops_per_step"]["forward"]["ops"]  # 4 passes, not 1
    for channels_last, nchw in result["scores_channels_last_vs_nchw"]:
        assert abs(channels_last - nchw) < 1e-3
