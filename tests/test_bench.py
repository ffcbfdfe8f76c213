import importlib.util
import json
from pathlib import Path

import pytest
import torch

from helpers import load_benchmark
from hyctas_lightning.cli import main
from hyctas_lightning.cli.errors import EXIT_FILES
from hyctas_lightning.deploy import optimize
from hyctas_lightning.evaluation import bench as bench_module
from hyctas_lightning.evaluation.bench import CPU_VARIANTS, InferenceRunner, Variant, bench, optimise
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


def test_repeats_interleave_the_networks_and_report_the_spread_of_the_speedups(monkeypatch):
    order = []
    real = bench_module.measure_latency

    def spy(runner, *args):
        order.append(runner.net.tag)
        return real(runner, *args)

    monkeypatch.setattr(bench_module, "measure_latency", spy)
    nets = {}
    for tag, fch in (("a", 4), ("b", 8)):
        nets[tag] = ChildNet(load_architecture(S), 8, fch=fch)
        nets[tag].tag = tag
    report = bench({"a": nets["a"]}, (32, 64), ["fp32", "fp32-fold"], peers={"b": nets["b"]}, device="cpu",
                   warmup=0, runs=2, repeat=3)
    assert order == ["a", "b"] * 6  # per repeat, per variant: every network in turn
    assert [(r.network, r.variant) for r in report.rows] == [("a", "fp32"), ("a", "fp32-fold"), ("b", "fp32"),
                                                             ("b", "fp32-fold")]
    row = report.rows[0]
    assert len(row.repeats_ms) == 3 and row.latency.median_ms == sorted(row.repeats_ms)[1]
    ratio = report.speedups()[0]
    per = [b / a for a, b in zip(report.rows[0].repeats_ms, report.rows[2].repeats_ms)]
    assert ratio["per_repeat"] == pytest.approx(per) and ratio["ratio"] == pytest.approx(sorted(per)[1])
    assert ratio["min"] == pytest.approx(min(per)) and ratio["max"] == pytest.approx(max(per))
    text = report.markdown()
    assert "3 interleaved repeats" in text and f"({min(per):.2f}-{max(per):.2f})" in text
    summary = report.comparison("hyctas bench ...", "b")
    assert summary["speedups"] == {"a": {"fp32": ratio["ratio"], "fp32-fold": report.speedups()[1]["ratio"]}}
    assert summary["rows"][0]["repeats_ms"] == row.repeats_ms and summary["gpu"] is None


def test_hyctas_bench_json_holds_every_size_of_one_command(tmp_path, capsys):
    out = tmp_path / "docs" / "inference.json"
    assert main(["bench", "--arch", S, "--fch", "4", "--size", "32", "64", "48", "64", "--peers", "--warmup", "0",
                 "--runs", "1", "--repeat", "2", "--variants", "fp32", "--json", str(out), "--out",
                 str(tmp_path / "md")]) == 0
    data = json.loads(out.read_text())
    assert [d["size"] for d in data] == [[32, 64], [48, 64]]
    for d in data:
        assert d["command"].startswith("hyctas bench --arch hyctas_s") and "--repeat 2" in d["command"]
        assert d["reference"] == "lraspp_mobilenet_v3_large" and d["repeat"] == 2
        assert set(d["speedups"]) == {"hyctas_s"} and d["speedups"]["hyctas_s"]["fp32"] > 0
        assert all(len(r["repeats_ms"]) == 2 for r in d["rows"])
    assert (tmp_path / "md" / "48x64" / "bench.md").read_text().startswith("Timing: batch 1 at 48x64")


def test_bench_outputs_are_checked_before_anything_is_timed(tmp_path, capsys, monkeypatch):
    def must_not_time(*args, **kwargs):
        raise AssertionError("timed before the outputs were checked")

    monkeypatch.setattr(bench_module, "bench", must_not_time)
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    for args, text in ((["--out", a_file], f"--out {a_file} is a file: give a folder"),
                       (["--json", tmp_path], f"--json {tmp_path} is a folder: give a file"),
                       (["--json", a_file / "x.json"], f"{a_file} is a file, not a folder"),
                       (["--out", a_file / "sub"], f"{a_file} is a file, not a folder")):
        assert main(["bench", "--arch", S, *map(str, args)]) == EXIT_FILES
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and text in err[0], err
    assert main(["bench", "--arch", S, "--size", "64", "128", "32"]) == 2
    assert "--size: give positive H W pairs" in capsys.readouterr().err


def test_deploy_optimize_returns_what_the_bench_times_and_auto_picks_an_exact_enough_variant(monkeypatch):
    net = ChildNet(load_architecture(S), 8, fch=4)
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        reference = net.eval()(x)
        runner = optimize(net, "fp32-fold-cl", x)
        assert isinstance(runner, InferenceRunner) and runner(x).is_contiguous(memory_format=torch.channels_last)
        assert ((runner(x) - reference).norm() / reference.norm()).item() < 1e-5
    monkeypatch.setitem(bench_module.TOLERANCE, "bf16", 0.0)  # bf16 no longer counts as the same network
    auto = optimize(net, "auto", x, candidates=["fp32", "fp32-fold", "bf16-fold-cl"], warmup=0, runs=3)
    selection = auto.selection
    assert [t.variant for t in selection.trials] == ["fp32", "fp32-fold", "bf16-fold-cl"]
    bf16 = selection.trials[2]
    assert not bf16.accepted and bf16.median_ms is None and bf16.rel_err > 0
    timed = {t.variant: t.median_ms for t in selection.trials if t.median_ms is not None}
    assert selection.chosen == min(timed, key=timed.get) and "| bf16-fold-cl |" in selection.markdown()


def test_deploy_auto_skips_variants_that_fail_and_says_when_none_runs():
    auto = optimize(Fp32Only(), "auto", torch.randn(1, 3, 8, 8), candidates=["bf16", "fp32"], warmup=0, runs=2)
    assert auto.selection.chosen == "fp32"
    assert auto.selection.trials[0].error == "no kernel for torch.bfloat16"
    with pytest.raises(RuntimeError, match="no variant ran within tolerance"):
        optimize(Fp32Only(), "auto", torch.randn(1, 3, 8, 8), candidates=["bf16"])


def test_inference_profile_counts_the_ops_of_a_pass_on_cpu(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("inference_profile", ROOT / "benchmarks/inference_profile.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "profile.json"
    zoo = str(ROOT / "model_zoo/camvid/searched_camvid.ckpt")
    assert script.main(["--networks", "hyctas_s", zoo, "--sizes", "32x64", "--variants", "fp32", "fp32-fold",
                        "--device", "cpu", "--warmup", "1", "--iters", "2", "--top", "5", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    results = {(r["network"], r["variant"]): r for r in data["results"]}
    assert set(results) == {(n, v) for n in ("hyctas_s", zoo) for v in ("fp32", "fp32-fold")}
    s = results[("hyctas_s", "fp32")]
    assert s["size"] == [32, 64] and s["rel_err"] == 0.0 and s["host_ms"] > 0 and s["wall_ms"] >= s["host_ms"]
    assert s["kernels"] is None and s["device_ms"] is None  # no GPU: no kernels to count
    assert 50 < s["aten_ops"] < 400 and results[(zoo, "fp32")]["aten_ops"] < s["aten_ops"]
    assert len(s["top_cpu"]) == 5 and any("conv" in r["op"] for r in s["top_cpu"])
    assert s["top_cpu"][0]["cpu_ms"] >= s["top_cpu"][-1]["cpu_ms"]
    text = capsys.readouterr().out
    assert "| hyctas_s | 32x64 | fp32 | " in text and "top ops per forward" in text


def test_the_fusion_ab_table_gives_each_arm_its_median_over_repeats_and_the_speed_up_over_the_reference():
    ab = load_benchmark("fused_inference_ab")
    rows = [{"repeat": k, "size": [8, 8], "network": name, "arm": arm, "ms": ms}
            for k, (name, arm, ms) in enumerate([("net", "default", 1.0), ("net", "default", 3.0),
                                                 ("net", "default", 2.0), ("net", "nchw_resize", 4.0),
                                                 (ab.REFERENCE, "default", 6.0)])]
    lines = ab.table(rows).splitlines()
    assert lines[2] == "| 8x8 | net | default | 2.000 | 1.00, 3.00, 2.00 | 3.00 |"
    assert lines[3] == "| 8x8 | net | nchw_resize | 4.000 | 4.00 | 1.50 |"


def test_each_fusion_ab_arm_sets_its_switches_and_the_default_restores_them():
    ab = load_benchmark("fused_inference_ab")
    from hyctas_lightning.layers import functional
    try:
        ab.set_arm("nchw_resize")
        assert functional.PIXEL_PARALLEL == 0 and torch.float32 in functional.FUSED_CONV_DTYPES
        ab.set_arm("unfused_fp32")
        assert functional.PIXEL_PARALLEL == 1 << 19 and torch.float32 not in functional.FUSED_CONV_DTYPES
    finally:
        ab.set_arm("default")
    assert functional.PIXEL_PARALLEL == 1 << 19 and torch.float32 in functional.FUSED_CONV_DTYPES
