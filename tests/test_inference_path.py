"""The eager inference path: in eval mode without autograd the layers run from derived weights (BatchNorm folded,
projections concatenated) with fewer ops, compute what the plain layers compute, and never use stale weights."""
from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import randomize_bn_
from hyctas_lightning.evaluation import fold_batchnorm
from hyctas_lightning.layers import ConvBNAct, DerivedWeightsOwner, derived_tensors
from hyctas_lightning.models import ChildNet, create_network, load_architecture
from hyctas_lightning.models.heads import PooledAttention
from hyctas_lightning.ops import build_op

ROOT = Path(__file__).resolve().parents[1]


class CountOps(TorchDispatchMode):
    """Counts the aten ops a block of code dispatches (what a GPU launches kernels for, plus views)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def plain(module: torch.nn.Module, *args) -> torch.Tensor:
    """The module's output through its plain layers (autograd on turns every shortcut off)."""
    with torch.enable_grad():
        return module(*args).detach()


@pytest.mark.parametrize("name", ["hyctas_s", "hyctas_m", "zoo"])
def test_eval_pass_folds_batchnorm_and_computes_the_plain_network(name):
    arch = load_architecture(ROOT / "model_zoo/camvid/searched_camvid.json" if name == "zoo" else name)
    net = randomize_bn_(ChildNet(arch, 11, fch=4))
    x = torch.randn(1, 3, 64, 96)
    reference = plain(net, x)
    with torch.no_grad():
        net(x)  # derives the folded weights once
    with torch.no_grad(), CountOps() as fast:
        out = net(x)
    with torch.enable_grad(), CountOps() as slow:
        net(x)
    assert relative_error(out, reference) < 1e-5
    assert fast.ops["aten.native_batch_norm"] == 0 and fast.ops["aten.slice"] == 0
    assert slow.ops["aten.native_batch_norm"] > 20
    # each BatchNorm took two ops (the norm and its output), gone with the fold; nothing new instead
    assert sum(fast.ops.values()) <= sum(slow.ops.values()) - 2 * slow.ops["aten.native_batch_norm"]


def test_derived_tensors_lists_what_an_eval_pass_cached_and_eval_drops_it():
    """A CUDA graph replays on these tensors' addresses, so its runner keeps the list: eval() or to() on the runner
    clear the caches, and without the list the graph would read freed memory."""
    net = randomize_bn_(ChildNet(load_architecture("hyctas_s"), 11, fch=4)).eval()
    with torch.no_grad():
        net(torch.randn(1, 3, 64, 96))
    kept = derived_tensors(net)
    owners = [m for m in net.modules() if isinstance(m, DerivedWeightsOwner)]
    assert len(kept) >= len(owners) > 20  # ConvBNAct caches a weight and a bias
    copies = [t.clone() for t in kept]
    net.eval()
    assert derived_tensors(net) == []
    assert all(torch.equal(a, b) for a, b in zip(kept, copies))


def test_the_folded_weights_follow_every_change_of_the_layer():
    layer = randomize_bn_(ConvBNAct(4, 6, 3))
    x = torch.randn(2, 4, 8, 8)

    def check():
        with torch.no_grad():
            got = layer(x)
        assert layer.runs_folded(x) is False  # autograd is on here
        assert relative_error(got, plain(layer, x)) < 1e-6
        return got

    first = check()
    with torch.no_grad():
        assert layer(x).data_ptr() != first.data_ptr() and torch.equal(layer(x), first)  # cached, same result
    cached = layer._folded._value
    with torch.no_grad():
        layer(x)
    assert layer._folded._value is cached  # nothing changed: not rebuilt

    with torch.no_grad():
        layer.conv.weight.mul_(2)  # an in-place update (an optimiser step, copy_prefix_)
    assert not torch.equal(check(), first)
    layer.load_state_dict({k: v + 0.1 if v.is_floating_point() else v for k, v in layer.state_dict().items()})
    check()
    layer.bn.bias = torch.nn.Parameter(torch.randn(6))  # a new parameter object
    check()
    layer.conv.weight.data = torch.randn(6, 4, 3, 3)  # new storage under the same parameter
    check()

    layer.train()  # back to training: batch statistics, running statistics updated in place
    assert layer._folded._stamp is None
    with torch.no_grad():
        trained = layer(x + 3)
    layer.eval()
    assert not torch.allclose(trained, plain(layer, x + 3), atol=1e-3)
    check()  # eval again: folded from the updated running statistics

    layer.double()  # a cast drops the cache and folds again in the new dtype
    assert layer._folded._stamp is None
    x = x.double()
    assert check().dtype == torch.float64


def test_autograd_in_eval_mode_still_reaches_every_parameter():
    """Eval mode with gradients (fine-tuning with frozen statistics, saliency maps) takes the plain layers."""
    layer = randomize_bn_(ConvBNAct(4, 6, 3))
    layer(torch.randn(1, 4, 8, 8)).sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_inference_mode_and_copies():
    layer = randomize_bn_(ConvBNAct(4, 6, 3))
    x = torch.randn(1, 4, 8, 8)
    with torch.inference_mode():
        got = layer(x)
    assert relative_error(got, plain(layer, x)) < 1e-6
    with torch.no_grad():
        assert torch.equal(layer(x), got)  # weights derived in inference mode serve a later no_grad pass
    twin = copy.deepcopy(layer)
    assert twin._folded._stamp is None  # a copy derives its own weights from its own parameters
    with torch.no_grad():
        twin.conv.weight.zero_()
        assert torch.equal(layer(x), got) and not torch.equal(twin(x), got)
    with torch.inference_mode():
        made_inside = randomize_bn_(ConvBNAct(4, 6, 3))  # inference tensors keep no version: never cached
        made_inside(x)
    assert made_inside._folded._stamp is None


@pytest.mark.parametrize("op", ["mesa", "light_conv_2x"])
def test_ops_with_concatenated_projections_and_in_place_residuals(op):
    cell = randomize_bn_(build_op(op, 8, 16))
    x = torch.randn(1, 8, 12, 16)
    with torch.no_grad():
        got = cell(x)
    assert relative_error(got, plain(cell, x)) < 1e-5
    with torch.no_grad():  # a narrower width slices the weights: the plain layers run
        assert relative_error(cell(x, 8), plain(cell, x, 8)) < 1e-6


def test_pooled_attention_runs_one_projection_conv():
    block = randomize_bn_(PooledAttention(16, 2))
    torch.nn.init.normal_(block.expand.bn.weight)  # a fresh block is the identity; make the attention count
    x = torch.randn(1, 16, 12, 16).relu()
    with torch.no_grad():
        block(x)
    with torch.no_grad(), CountOps() as ops:
        got = block(x)
    assert ops.ops["aten.convolution"] == 3  # reduce, q/k/v together, expand
    assert relative_error(got, plain(block, x)) < 1e-5


def test_a_network_folded_for_deployment_runs_the_folded_convs_as_they_are():
    net = randomize_bn_(create_network("hyctas_s", 5, fch=4))
    x = torch.randn(1, 3, 32, 64)
    deployed = copy.deepcopy(net)
    assert fold_batchnorm(deployed) > 0
    with torch.no_grad(), CountOps() as ops:
        got = deployed(x)
    assert ops.ops["aten.native_batch_norm"] == 0 and deployed.stem.conv._folded._stamp is None  # nothing to derive
    assert relative_error(got, plain(net, x)) < 1e-5
