"""The whole method on CamVid, end to end on one GPU: supernet -> NSGA-II search -> retraining of the top
searched networks beside hand-designed baselines under one recipe -> whole-image evaluation and latency ->
a results table and Pareto plot. Every result lands under one run folder (default ``runs/camvid``).

    python benchmarks/camvid_pipeline.py --root ../shared/datasets/camvid

Stages (``--stages``, in this order): ``supernet`` (``hyctas fit --config configs/camvid/supernet.yaml``),
``cap`` (``--cap_factor`` x LRASPP-MobileNetV3-Large's latency at 360x480 on this GPU: the search's latency
cap), ``search`` (``hyctas search`` with ``configs/camvid/search.yaml``), ``retrain`` (``hyctas fit --config
configs/camvid/retrain.yaml`` for the search's top-K, HyCTAS-S and the two torchvision baselines, run
concurrently on the one GPU), ``evaluate`` (val mIoU and per-class IoU at full resolution), ``latency``
(params, mult-adds, batch-1 latency at 360x480 and 1024x2048 per precision, one network at a time) and
``report`` (``RESULTS.md``, ``pareto.png``). Each stage resumes from the files of the previous ones: rerunning the
command skips finished work and continues
interrupted training from ``last.ckpt`` and the search from its journal. Extra dotted overrides go to each stage's
command with ``--supernet_args``, ``--search_args`` and ``--retrain_args`` (quoted strings).
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from hyctas_lightning.data import CAMVID_CLASSES, CamVidDataModule, TransformConfig
from hyctas_lightning.evaluation.bench import bench
from hyctas_lightning.evaluation.latency import measure_latency
from hyctas_lightning.evaluation.metrics import mean_iou, per_class_iou
from hyctas_lightning.models import create_network, load_network
from hyctas_lightning.search.journal import Journal

STAGES = ("supernet", "cap", "search", "retrain", "evaluate", "latency", "report")
BASELINES = {"lraspp_mobilenet_v3_large": ["--model.init_args.network", "lraspp_mobilenet_v3_large"],
             "deeplabv3_mobilenet_v3_large": ["--model.init_args.network", "deeplabv3_mobilenet_v3_large"],
             "hyctas_s": ["--model.init_args.arch", "hyctas_s"]}
CAP_NETWORK = "lraspp_mobilenet_v3_large"
SIZES = {"camvid": (360, 480), "cityscapes": (1024, 2048)}
GPU_VARIANTS = ("fp32", "fp16-fold-cl", "bf16-fold-cl", "fp16-fold-cl-graph")


def launch(args: List[str], log: Path) -> subprocess.Popen:
    """Start one ``hyctas`` command in the background, its output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ hyctas {shlex.join(args)}   (log: {log})", flush=True)
    with log.open("a") as f:  # the child keeps its own handle
        return subprocess.Popen([sys.executable, "-m", "hyctas_lightning.cli", *args], stdout=f,
                                stderr=subprocess.STDOUT)


def hyctas(args: List[str], log: Path) -> None:
    """Run one ``hyctas`` command to the end; a failure stops the pipeline with the log's tail."""
    code = launch(args, log).wait()
    if code != 0:
        raise SystemExit(f"command failed ({code}): hyctas {shlex.join(args)}\n"
                         + "".join(log.read_text().splitlines(True)[-30:]))


def run_folder(root: Path) -> List[str]:
    """Overrides that put a run's logs and ``checkpoints/`` directly in ``root``."""
    return ["--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root)]


def resume_flag(root: Path) -> List[str]:
    last = root / "checkpoints" / "last.ckpt"
    return ["--ckpt_path", str(last)] if last.exists() else []


class Pipeline:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run = Path(args.run)
        self.run.mkdir(parents=True, exist_ok=True)
        self.root = str(Path(args.root).resolve())

    def done(self, name: str) -> bool:
        return (self.run / f".{name}.done").exists()

    def mark(self, name: str, seconds: float) -> None:
        (self.run / f".{name}.done").write_text(f"{seconds:.1f}\n")

    # ------------------------------------------------------------------ stages
    def supernet(self) -> None:
        out = self.run / "supernet"
        hyctas(["fit", "--config", "configs/camvid/supernet.yaml", "--data.init_args.root", self.root,
                *run_folder(out), *resume_flag(out), *shlex.split(self.args.supernet_args)],
               out / "fit.log")

    def cap(self) -> None:
        net = create_network(CAP_NETWORK, len(CAMVID_CLASSES))
        latency = measure_latency(net, SIZES["camvid"], "cuda" if torch.cuda.is_available() else "cpu",
                                  self.args.warmup, self.args.runs)
        cap = self.args.cap_factor * latency.median_ms
        record = {"network": CAP_NETWORK, "factor": self.args.cap_factor, "cap_ms": cap, **latency.to_dict()}
        (self.run / "latency_cap.json").write_text(json.dumps(record) + "\n")
        print(f"latency cap: {self.args.cap_factor} x {CAP_NETWORK}'s {latency.median_ms:.2f} ms at 360x480 on "
              f"{latency.device} = {cap:.2f} ms", flush=True)

    def search(self) -> None:
        cap = json.loads((self.run / "latency_cap.json").read_text())["cap_ms"]
        hyctas(["search", "--ckpt", str(self.run / "supernet" / "checkpoints" / "last.ckpt"), "--config",
                "configs/camvid/search.yaml", "--out", str(self.run / "search"),
                "--search.latency_cap_ms", f"{cap:.4f}", *shlex.split(self.args.search_args)],
               self.run / "search" / "search.log")

    def picks(self) -> Dict[str, dict]:
        """The search's top-K (``topk/``: the front's members of largest crowding distance, i.e. spread from the
        fastest to the most accurate), most accurate first."""
        search = self.run / "search"
        chosen = {path.stem.split("_")[-1] for path in (search / "topk").glob("*.json")}
        front = [c for c in json.loads((search / "pareto.json").read_text()) if c["hash"] in chosen]
        front = sorted(front, key=lambda c: -c["measurements"]["miou"])[: self.args.top]
        return {f"searched_{i + 1}": c for i, c in enumerate(front)}

    def retrain_jobs(self) -> Dict[str, List[str]]:
        """Model arguments of every retraining job (or of ``--jobs`` only), searched networks first."""
        wanted = self.args.jobs
        if wanted and not any(name.startswith("searched_") for name in wanted):
            return {name: args for name, args in BASELINES.items() if name in wanted}
        jobs = {}
        for name, candidate in self.picks().items():
            path = self.run / "retrain" / f"{name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(candidate["arch"], indent=1) + "\n")
            jobs[name] = ["--model.init_args.arch", str(path)]
        return {name: args for name, args in {**jobs, **BASELINES}.items() if not wanted or name in wanted}

    def retrain(self) -> None:
        """All jobs at once: small networks leave most of a big GPU idle, so they share it."""
        running = {}
        for name, model_args in self.retrain_jobs().items():
            out = self.run / "retrain" / name
            if (out / "DONE").exists():
                continue
            args = ["fit", "--config", "configs/camvid/retrain.yaml", *model_args, "--data.init_args.root", self.root,
                    *run_folder(out), *resume_flag(out), *shlex.split(self.args.retrain_args)]
            running[name] = (launch(args, out / "fit.log"), time.time(), out)
        failed = []
        for name, (process, start, out) in running.items():
            if process.wait() != 0:
                failed.append(f"{name}: see {out / 'fit.log'}")
                continue
            (out / "DONE").write_text(f"{time.time() - start:.1f}\n")
        if failed:
            raise SystemExit("retraining failed:\n" + "\n".join(failed))

    def evaluate(self) -> None:
        """Val mIoU and per-class IoU of every retrained job not evaluated yet, merged into ``results.json``."""
        results = self.results()
        data = CamVidDataModule(self.root, batch_size=4, num_workers=4, max_samples=self.args.val_samples,
                                transforms=TransformConfig(pad_to_multiple=32))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        for name in self.retrain_jobs():
            out = self.run / "retrain" / name
            if name in results and not self.args.force:
                continue
            net, meta = load_network(out / "checkpoints" / "last.ckpt")
            ious = validate(net.to(device), data, device)
            results[name] = {"miou": float(mean_iou(ious)), "iou": dict(zip(CAMVID_CLASSES, ious.tolist())),
                             "train_seconds": float((out / "DONE").read_text()), "images_per_s": throughput(out),
                             "network": meta["network"]}
            print(f"{name}: val mIoU {100 * results[name]['miou']:.2f}", flush=True)
            self.save_results(results)

    def latency(self) -> None:
        """Params, mult-adds and batch-1 latency per precision of every evaluated network at CamVid's and
        Cityscapes' sizes, one network at a time on an otherwise idle GPU (trained weights do not change it)."""
        results = self.results()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        variants = GPU_VARIANTS if device == "cuda" else ("fp32",)
        for name, entry in results.items():
            spec = entry["network"]
            net = create_network(spec["arch"] or spec["network"], spec["num_classes"], fch=spec["fch"],
                                 output_stride=spec["output_stride"])
            for size_name, size in SIZES.items():
                report = bench({name: net}, size, variants, device=device, warmup=self.args.warmup,
                               runs=self.args.runs)
                rows = report.to_dict()["rows"]
                entry.update(params_m=rows[0]["params_m"], device=report.device)
                entry[f"macs_g_{size_name}"] = rows[0]["macs_g"]
                entry[f"latency_{size_name}"] = {r["variant"]: r["median_ms"] for r in rows}
            self.save_results(results)

    def results(self) -> Dict[str, dict]:
        path = self.run / "results.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def save_results(self, results: Dict[str, dict]) -> None:
        (self.run / "results.json").write_text(json.dumps(results, indent=1) + "\n")

    def report(self) -> None:
        from report_camvid import write_report

        write_report(self.run, self.picks(), Journal(self.run / "search" / "candidates.jsonl").candidates())


@torch.no_grad()
def validate(net: torch.nn.Module, data: CamVidDataModule, device: str) -> torch.Tensor:
    """Per-class IoU over the whole val split at full resolution (padding ignored)."""
    metric = per_class_iou(len(CAMVID_CLASSES)).to(device)
    data.setup("validate")
    for batch in data.val_dataloader():
        metric.update(net(batch["image"].to(device)).argmax(1), batch["mask"].to(device))
    return metric.compute().cpu()


def throughput(out: Path) -> Optional[float]:
    """Images per second of the training run, from the throughput callback's closing line."""
    lines = [line for line in (out / "fit.log").read_text().splitlines() if line.startswith("training throughput")]
    return float(lines[-1].split("=")[-1].split()[0]) if lines else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/datasets/camvid")
    parser.add_argument("--run", default="runs/camvid")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--top", type=int, default=3, help="searched networks to retrain (at most the search's top_k)")
    parser.add_argument("--cap_factor", type=float, default=2.0,
                        help=f"search latency cap = this x {CAP_NETWORK}'s latency at 360x480")
    parser.add_argument("--jobs", nargs="+", default=None,
                        help=f"retrain/evaluate only these (searched_1.., {', '.join(BASELINES)}); stages are "
                             "then not marked done")
    parser.add_argument("--warmup", type=int, default=50, help="latency warm-up passes")
    parser.add_argument("--runs", type=int, default=100, help="latency timed passes")
    parser.add_argument("--val_samples", type=int, default=None, help="cap the val split (quick checks only)")
    parser.add_argument("--supernet_args", default="")
    parser.add_argument("--search_args", default="")
    parser.add_argument("--retrain_args", default="")
    parser.add_argument("--force", action="store_true", help="rerun stages already marked done")
    args = parser.parse_args()
    pipeline = Pipeline(args)
    for stage in args.stages:
        if pipeline.done(stage) and not args.force:
            print(f"[{stage}] done before, skipped", flush=True)
            continue
        print(f"[{stage}] {time.strftime('%H:%M:%S')}", flush=True)
        start = time.time()
        getattr(pipeline, stage)()
        if not args.jobs:
            pipeline.mark(stage, time.time() - start)
        print(f"[{stage}] finished in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
