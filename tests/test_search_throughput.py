"""benchmarks/search_throughput.py on the CPU at a tiny size: the per-part table with profiles counted ahead, and the
same candidates scored with fewer calibration images and timed with and without the supernet's weights."""
import re

from helpers import run_benchmark


def test_search_throughput_reports_parts_and_calibration_counts():
    done = run_benchmark("search_throughput", "--device", "cpu", "--evals", "3", "--layers", "4", "--fch", "4",
                         "--classes", "4", "--latency_size", "32", "64", "--size", "32", "64", "--calibration", "6",
                         "--val", "2", "--batch", "2", "--warmup", "0", "--runs", "1", "--profile_workers", "1",
                         "--build_ahead", "--calibration_counts", "2", "4", "--weight_check")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "profiles counted ahead by 1 worker process; each ChildNet built ahead, while the candidate before" in out
    for part in ("profile (the wait for a profile counted ahead)", "build (host time no device work covered)",
                 "latency", "recalibration", "validation", "**total** (wall time per candidate)"):
        assert re.search(rf"^\| {re.escape(part)} \| \d+\.\d{{3}} \|", out, re.M), (part, out)
    # the first candidate is built in its own evaluation, the other two during their predecessor's scoring
    assert re.search(r"^\| build hidden behind the previous candidate's scoring \(of 2 built ahead; not in the wall "
                     r"time\) \| \d+\.\d{3} \| - \|$", out, re.M), out
    rows = re.findall(r"^\| (\d+) \| (\d+\.\d{3}) \| (\d+\.\d{3}) \| (\d+\.\d{3}) \| (\S+) \|$", out, re.M)
    assert [int(r[0]) for r in rows] == [6, 4, 2], out  # the full set first, then each count, largest first
    assert float(rows[0][2]) == float(rows[0][3]) == 0.0  # the full set against itself
    assert re.search(r"with the supernet's weights, per candidate: median \d+\.\d{3}, range", out)
    drift = float(re.search(r"max abs\. mIoU difference (\S+)", out).group(1))
    assert drift < 1e-6  # recalibrating on the full set again reproduces the evaluations' scores


def test_search_throughput_rejects_counts_beyond_the_calibration_set():
    done = run_benchmark("search_throughput", "--device", "cpu", "--calibration", "4", "--calibration_counts", "8")
    assert done.returncode == 2 and "--calibration_counts: each in 1..4" in done.stderr
