"""Small helpers shared by test modules."""
import importlib.util
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from hyctas_lightning.training import AtomicCheckpointIO

ROOT = Path(__file__).resolve().parents[1]
# the demo supernet and search at the smallest size, as --fit_arg / --search_arg of the benchmarks that run them
TINY_DEMO_ARGS = ["--fit_arg=--model.init_args.space.layers=4", "--fit_arg=--model.init_args.val_random=1",
                  "--fit_arg=--model.init_args.calibration_images=8", "--fit_arg=--data.init_args.train_samples=16",
                  "--fit_arg=--data.init_args.val_samples=8", "--fit_arg=--data.init_args.batch_size=4",
                  "--search_arg=--search.calibration_images=8", "--search_arg=--search.val_images=8",
                  "--search_arg=--search.latency_size=[64,128]", "--search_arg=--search.latency_warmup=1",
                  "--search_arg=--search.latency_runs=1"]


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/NAME.py`` as a module (the benchmarks folder on the path: they import each other)."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_benchmark(name: str, *args: str) -> subprocess.CompletedProcess:
    """``python benchmarks/NAME.py ARGS`` from the repository root with this source tree, on one thread."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def randomize_bn_(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so inheritance or folding errors cannot hide behind
    identities. Returns the model in eval mode."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


class Recorder(AtomicCheckpointIO):
    """Writes as ``AtomicCheckpointIO`` does, slowly if asked, and records what it wrote and how many writes ran at
    once."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay, self.saved, self.running, self.most_at_once = delay, [], 0, 0
        self.lock = threading.Lock()

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.delay)
        super().save_checkpoint(checkpoint, path, storage_options)
        self.saved.append((os.path.basename(path), checkpoint["global_step"], checkpoint.get("epochs_ended")))
        with self.lock:
            self.running -= 1
