"""Small runs the notebooks make on the spot when they find no run folder of yours: the demo's configs shrunk to
seconds on a CPU. They show the notebooks working end to end; their numbers mean nothing."""
from __future__ import annotations

import json
import random
from pathlib import Path

from hyctas_lightning.cli import main
from hyctas_lightning.data import build_datamodule
from hyctas_lightning.models import load_supernet
from hyctas_lightning.search import SearchConfig, run_search

ROOT = Path(__file__).resolve().parents[1]


def tiny_supernet(folder: Path) -> Path:
    """``hyctas fit --config configs/demo/supernet.yaml`` on a 4-layer space, 32 scenes of 32x64, 3 epochs: a run
    folder with TensorBoard logs and ``checkpoints/last.ckpt`` (made once, then reused)."""
    folder = Path(folder)
    if not (folder / "checkpoints" / "last.ckpt").is_file():
        code = main(["fit", "--config", str(ROOT / "configs" / "demo" / "supernet.yaml"),
                     "--trainer.default_root_dir", str(folder), "--trainer.max_epochs", "3",
                     "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
                     "--trainer.enable_model_summary", "false", "--model.init_args.space.layers", "4",
                     "--data.init_args.train_samples", "32", "--data.init_args.val_samples", "8",
                     "--data.init_args.size", "[32, 64]", "--data.init_args.batch_size", "8"])
        if code != 0:
            raise RuntimeError(f"the tiny supernet training failed (exit status {code})")
    return folder


def tiny_search(folder: Path) -> Path:
    """NSGA-II over :func:`tiny_supernet` (population 6, 2 generations, CPU latency at 32x64): a search run folder
    (made once, then reused)."""
    folder = Path(folder)
    out = folder / "search"
    if not (out / "history.json").is_file():
        supernet, meta = load_supernet(tiny_supernet(folder / "supernet") / "checkpoints" / "last.ckpt")
        config = SearchConfig(population=6, generations=2, calibration_images=16, val_images=8, latency_backend="cpu",
                              latency_size=(32, 64), latency_warmup=2, latency_runs=5, top_k=3)
        run_search(supernet, build_datamodule(meta["data"]), config, out, device="cpu", show_progress=False)
    return out


def example_rank_study(folder: Path, members: int = 12, seed: int = 0) -> Path:
    """A ranking study's ``report.json`` holding made-up numbers (seeded): supernet estimates and standalone mIoU
    of ``members`` random sub-networks, related but noisy, so the plot and tau have something to show."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    estimates = [rng.uniform(0.10, 0.30) for _ in range(members)]
    standalone = [0.35 + 1.2 * e + rng.gauss(0.0, 0.04) for e in estimates]
    report = {"variants": {"fixture": {"members": {
        f"random{i}": {"supernet_miou": e, "standalone_miou": s} for i, (e, s) in enumerate(zip(estimates, standalone))
    }}}}
    (folder / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return folder
