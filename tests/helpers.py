"""Small helpers shared by test modules."""
import torch
from torch import nn


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
