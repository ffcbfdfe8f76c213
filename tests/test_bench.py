import importlib.util
import json
from pathlib import Path

import pytest
import torch

from hyctas_lightning.cli import main
from hyctas_lightning.evaluation.bench import CPU_VARIANTS, Variant, bench, optimise
from hyctas_lightning.models import ChildNet, load_architecture

ROOT = Path(__file__).resolve().parents[1]
S = "hyctas_s"


def test_variants_parse_and_name_themselves():
    v = Variant.parse("fp16-cl-fold-graph")
    assert (v.dtype, v.fold, v.channels_last, v.compile, v.cuda_graph) == ("fp16", True, True, False, True)
    assert v.name == "fp16-fold-cl-graph" and Variant.parse("fp32") == Variant()
    for bad in ("fp8", "fp32-fast", "fp32-fold-fold"):
        with pytest.raises(ValueError, match="DTYPE\\[-fold\\]"):
            Variant.parse(bad)


def test_optimised_paths_compute_the_same_network_on_cpu():
    net = ChildNet(load_architecture(S), 8, fch=4).eval()
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        reference = net(x)
        for name, tolerance in (("fp32-fold-cl", 1e-5), ("bf16-fold-cl", 5e-2)):
            runner = optimise(net, Variant.parse(name), x)
            out = runner(x)
            assert out.dtype == torch.bfloat16 if name.startswith("bf16") else out.dtype == torch.float32
            assert ((out.float() - reference).norm() / reference.norm()).item() < tolerance
    with pytest.raises(ValueError, match="CUDA graphs need a GPU"):
        optimise(net, Variant.parse("fp16-graph"), x)


def test_bench_times_networks_and_peers_with_the_wall_clock_on_cpu():
    net = ChildNet(load_architecture(S), 8, fch=4)
    peer = ChildNet(load_architecture(S), 8, fch=8)
    report = bench({"small": net}, (64, 128), ["fp32", "fp32-fold"], peers={"big": peer}, device="cpu",
                   warmup=1, runs=3)
    assert [(r.network, r.variant) for r in report.rows] == [("small", "fp32"), ("small", "fp32-fold"),
                                                             ("big", "fp32"), ("big", "fp32-fold")]
    assert all(r.latency.backend == "cpu" and r.latency.median_ms > 0 and r.rel_err < 1e-5 for r in report.rows)
    ratios = report.speedups()
    assert [(r["peer"], r["variant"]) for r in ratios] == [("big", "fp32"), ("big", "fp32-fold")]
    assert ratios[0]["ratio"] == pytest.approx(report.rows[2].latency.median_ms / report.rows[0].latency.median_ms)
    text = report.markdown()
    assert "wall clock on the CPU" in text and "| small | " in text and "vs big" in text


def test_hyctas_bench_cli_with_peers_writes_markdown_and_json(tmp_path, capsys):
    assert main(["bench", "--arch", S, "--fch", "4", "--size", "64", "128", "--peers", "--warmup", "1", "--runs", "2",
                 "--variants", "fp32", "fp32-fold-cl", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "wall clock on the CPU" in out and "vs lraspp_mobilenet_v3_large" in out
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["backend"] == "cpu" and data["size"] == [64, 128]
    assert {r["network"] for r in data["rows"]} == {"hyctas_s", "lraspp_mobilenet_v3_large",
                                                    "deeplabv3_mobilenet_v3_large"}
    assert len(data["speedups"]) == 4 and all(s["ratio"] > 0 for s in data["speedups"])
    assert (tmp_path / "bench.md").read_text().startswith("Timing: batch 1 at 64x128")


def test_hyctas_bench_needs_a_network(capsys):
    assert main(["bench", "--size", "64", "128"]) == 2
    assert "nothing to run: give --arch" in capsys.readouterr().err


def test_latency_presets_script_adds_the_paper_comparison(tmp_path):
    spec = importlib.util.spec_from_file_location("latency_presets", ROOT / "benchmarks/latency_presets.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--out", str(tmp_path), "--size", "32", "64", "--device", "cpu", "--warmup", "0",
                        "--runs", "1", "--variants", CPU_VARIANTS[0]]) == 0
    markdown = (tmp_path / "bench.md").read_text()
    assert "Against the paper" in markdown and "| hyctas_l | 12.4 |" in markdown
    assert "| hyctas_s_paper | 159.2 |" in markdown and "hyctas_s fp32: " in markdown
    parts = sorted(p.stem for p in (tmp_path / "parts").glob("*.json"))
    assert parts == sorted(script.PRESETS + ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"))

    def must_not_time(*args):
        raise AssertionError("a rerun with the same settings re-timed a network")

    script.time_network = must_not_time  # the rerun resumes from the parts
    assert script.main(["--out", str(tmp_path), "--size", "32", "64", "--device", "cpu", "--warmup", "0",
                        "--runs", "1", "--variants", CPU_VARIANTS[0]]) == 0
    assert (tmp_path / "bench.md").read_text() == markdown
    assert json.loads((tmp_path / "bench.json").read_text())["paper"]["hyctas_s"]["fps"] == 159.2


class Fp32Only(torch.nn.Module):
    """Stands in for a variant that a backend cannot run (a compiler or graph-capture error)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            raise RuntimeError(f"no kernel for {x.dtype}\nmore detail")
        return self.conv(x)


def test_a_failing_variant_is_reported_and_the_rest_still_timed():
    report = bench({"net": Fp32Only()}, (16, 16), ["fp32", "bf16"], device="cpu", warmup=0, runs=2)
    assert [r.variant for r in report.rows] == ["fp32"]
    assert report.failures == [{"network": "net", "variant": "bf16", "error": "no kernel for torch.bfloat16"}]
    assert "- net bf16: no kernel for torch.bfloat16" in report.markdown()
