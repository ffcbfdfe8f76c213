import json
import random
import sys
from pathlib import Path

from hyctas_lightning.data import CAMVID_CLASSES
from hyctas_lightning.search.journal import Candidate
from hyctas_lightning.search_space import SearchSpace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from report_camvid import write_report  # noqa: E402

PRECISIONS = ("fp32", "fp16-fold-cl")


def entry(miou: float, ms: float) -> dict:
    latency = {p: ms / (i + 1) for i, p in enumerate(PRECISIONS)}
    return {"miou": miou, "iou": dict.fromkeys(CAMVID_CLASSES, miou), "train_seconds": 10.0, "images_per_s": 99.0,
            "params_m": 1.0, "macs_g_camvid": 2.0, "macs_g_cityscapes": 20.0, "device": "test GPU",
            "latency_camvid": latency, "latency_cityscapes": latency}


def test_report_tables_verdict_and_rank_correlation(tmp_path):
    space = SearchSpace(layers=4, fch=4)
    rng = random.Random(0)
    candidates = [Candidate(space.sample(rng), {"miou": m, "latency_ms": m * 10}, True, 0) for m in (0.1, 0.2, 0.3)]
    picks = {f"searched_{i + 1}": {"measurements": c.measurements} for i, c in enumerate(reversed(candidates))}
    results = {"searched_1": entry(0.62, 3.0), "searched_2": entry(0.50, 1.0), "searched_3": entry(0.61, 0.5),
               "lraspp_mobilenet_v3_large": entry(0.60, 2.0)}
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "latency_cap.json").write_text(json.dumps({"network": "lraspp_mobilenet_v3_large", "factor": 2.0,
                                                          "cap_ms": 4.0, "median_ms": 2.0}))
    text = write_report(tmp_path, picks, candidates).read_text()
    assert "searched_1: +2.00 mIoU points and 1.50x the latency" in text and "does not beat it on both" in text
    assert "searched_2: -10.00 mIoU points and 0.50x" in text
    assert ("searched_3: +1.00 mIoU points and 0.25x the latency of lraspp_mobilenet_v3_large (360x480, fp32) "
            "— beats it on both") in text
    assert "Kendall tau" in text and ": 0.33 (p" in text  # supernet order 1 > 2 > 3, retrained 1 > 3 > 2
    assert "| searched_1 | 62.00 |" in text and "| sky |" in text
    assert (tmp_path / "pareto.png").stat().st_size > 5000
