"""Small helpers shared by test modules."""
import os
import threading
import time

import torch
from torch import nn

from hyctas_lightning.training import AtomicCheckpointIO


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
