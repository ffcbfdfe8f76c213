"""The faster paths compute what the plain ones do: padded attention heads, channels-last resizing and supernets,
slicing only below full width, momentum buffers made up front for a fused SGD, BN recalibration without syncs, the
fused convolution + bias (+ residual) + ReLU of the inference path (on the GPU where there is one)."""
from __future__ import annotations

import copy
import random

import pytest
import torch
import torch.nn.functional as F

from hyctas_lightning.layers import ConvBNAct, SlimBatchNorm2d, SlimConv2d
from hyctas_lightning.layers.functional import conv2d_add_relu, conv2d_relu, padded_attention, resize_bilinear
from hyctas_lightning.models import SuperNet
from hyctas_lightning.search_space import SearchSpace
from hyctas_lightning.training.optim import prime_momentum


@pytest.mark.parametrize("d_qk,d_v", [(2, 12), (6, 20), (8, 8)])
def test_padded_attention_heads_give_the_plain_result(d_qk, d_v):
    q, k = torch.randn(2, 2, 40, d_qk), torch.randn(2, 2, 40, d_qk)
    v = torch.randn(2, 2, 40, d_v)
    out = padded_attention(q, k, v)
    assert out.shape == (2, 2, 40, d_v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), rtol=1e-5, atol=1e-6)


def test_channels_last_bilinear_resize_gives_the_nchw_numbers():
    x = torch.randn(3, 24, 11, 15)
    nchw = F.interpolate(x, size=(22, 30), mode="bilinear", align_corners=False)
    cl = F.interpolate(x.contiguous(memory_format=torch.channels_last), size=(22, 30), mode="bilinear",
                       align_corners=False).contiguous()
    torch.testing.assert_close(cl, nchw, rtol=1e-6, atol=1e-6)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# the fused cuDNN calls run on the GPU (fp32 and half precision); on the CPU the plain ops
FUSED_CASES = [("cpu", torch.float32)] + [("cuda", d) for d in (torch.float32, torch.float16) if "cuda" in DEVICES]


@pytest.mark.parametrize("device,dtype", FUSED_CASES)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_fused_conv_relu_gives_the_plain_numbers(device, dtype, memory_format):
    g = torch.Generator().manual_seed(0)
    x, z = torch.randn(2, 16, 20, 24, generator=g), torch.randn(2, 32, 10, 12, generator=g)
    w, b = torch.randn(32, 16, 3, 3, generator=g) / 12, torch.randn(32, generator=g)
    x, z, w, b = (t.to(device, dtype).contiguous(memory_format=memory_format) if t.dim() == 4 else t.to(device, dtype)
                  for t in (x, z, w, b))
    plain = F.conv2d(x.float(), w.float(), b.float(), 2, 1)
    # cuDNN may run fp32 convolutions in TF32 (PyTorch's default), the fused call with other kernels than the plain one
    tol = dict(rtol=1e-2, atol=1e-2) if dtype == torch.float16 else (
        dict(rtol=2e-3, atol=2e-3) if device == "cuda" else dict(rtol=1e-4, atol=1e-4))
    torch.testing.assert_close(conv2d_relu(x, w, b, (2, 2), (1, 1), (1, 1)).float(), plain.relu(), **tol)
    torch.testing.assert_close(conv2d_add_relu(x, w, b, z, (2, 2), (1, 1), (1, 1)).float(), (plain + z.float()).relu(),
                               **tol)


@pytest.mark.parametrize("device", DEVICES)
def test_the_inference_path_under_autocast_casts_like_the_plain_ops(device):
    """Validation of a mixed-precision training runs eval-mode layers under autocast: fp32 weights, half inputs."""
    layer = ConvBNAct(8, 12, 3, act=True).eval().to(device)
    block = ConvBNAct(8, 12, 1, act=False).eval().to(device)
    x = torch.randn(2, 8, 16, 16, device=device)
    dtype = torch.bfloat16
    with torch.no_grad(), torch.autocast(device, dtype):
        half = layer(x.to(dtype))  # a half map and fp32 weights: the plain ops, cast by autocast
        summed = block.add_relu(x.to(dtype), half)
        expected = F.relu(F.conv2d(x.to(dtype), *layer.inference_weights(), padding=1))
    assert half.dtype == expected.dtype and summed.shape == half.shape
    torch.testing.assert_close(half.float(), expected.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("training", [True, False])
def test_residual_sum_of_a_layer_is_its_output_plus_the_branch(training):
    layer = ConvBNAct(8, 12, 1, act=False).train(training)
    with torch.no_grad():
        layer.bn.running_mean.uniform_(-1, 1), layer.bn.running_var.uniform_(0.5, 2)
    x, z = torch.randn(2, 8, 9, 9, requires_grad=training), torch.randn(2, 12, 9, 9)
    with torch.set_grad_enabled(training):
        expected = (layer(x) + z).relu()
        out = layer.add_relu(x, z.clone())
    torch.testing.assert_close(out, expected)
    if training:
        out.sum().backward()
        assert x.grad is not None and layer.conv.weight.grad is not None
    with pytest.raises(ValueError, match="act=False"):
        ConvBNAct(8, 12, 1).add_relu(x, z)


@pytest.mark.parametrize("device", DEVICES)
def test_large_resizes_outside_autograd_give_the_same_numbers(device):
    """Outside autograd a resize to many pixels takes the NCHW kernel, also for a channels-last input."""
    x = torch.randn(1, 19, 96, 128, device=device)
    expected = F.interpolate(x, size=(768, 1024), mode="bilinear", align_corners=False)
    for inp in (x, x.contiguous(memory_format=torch.channels_last)):
        with torch.no_grad():
            torch.testing.assert_close(resize_bilinear(inp, (768, 1024)), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(resize_bilinear(inp.requires_grad_(), (768, 1024)), expected, rtol=1e-5,
                                   atol=1e-5)


def test_channels_last_supernet_matches_nchw():
    space = SearchSpace(layers=5, fch=4)
    net = SuperNet(space, 5).eval()
    cl = copy.deepcopy(net).set_channels_last()
    x = torch.randn(2, 3, 64, 64)
    for seed in range(3):
        arch = space.sample(random.Random(seed))
        with torch.no_grad():
            torch.testing.assert_close(cl(x, arch), net(x, arch), rtol=1e-4, atol=1e-4)


def test_full_width_uses_the_parameter_and_narrow_width_its_prefix():
    conv, bn = SlimConv2d(8, 6, 3, padding=1), SlimBatchNorm2d(6)
    x = torch.randn(2, 8, 5, 5)
    (conv(x).sum() + conv(x, 4).sum()).backward()
    assert conv.weight.grad[4:].abs().sum() > 0  # the full-width pass reached the rows the narrow one leaves
    y = bn(torch.randn(4, 3, 5, 5))
    assert y.shape == (4, 3, 5, 5) and int(bn.num_batches_tracked) == 0  # a momentum needs no batch count


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_narrow_weight_view_gives_the_sliced_numbers_and_a_gradient_in_the_weight_layout(memory_format):
    conv = SlimConv2d(8, 6, 3, padding=1, bias=True).to(memory_format=memory_format)
    x = torch.randn(2, 5, 7, 7, requires_grad=True).contiguous(memory_format=memory_format)
    weight, bias = conv.weight.detach().clone().requires_grad_(), conv.bias.detach().clone().requires_grad_()
    for out_channels in (4, 6, 3):  # accumulated over passes as a sandwich step does
        conv(x, out_channels).square().sum().backward()
        F.conv2d(x, weight[:out_channels, :5], bias[:out_channels], padding=1).square().sum().backward()
    assert torch.equal(conv.weight.grad, weight.grad) and torch.equal(conv.bias.grad, bias.grad)
    assert conv.weight.grad.stride() == conv.weight.stride()  # what a fused SGD step reads
    index = torch.tensor([0, 1, 6, 7])  # the fusion node's non-leading input channels
    conv.weight.grad = weight.grad = None
    conv(x[:, :4], 3, index).sum().backward()
    F.conv2d(x[:, :4], weight[:3].index_select(1, index), bias[:3], padding=1).sum().backward()
    assert torch.equal(conv.weight.grad, weight.grad)


def test_recalibration_count_is_exact_without_reading_the_gpu_count():
    bn = SlimBatchNorm2d(4, momentum=None)
    batches = [torch.randn(8, 4, 3, 3) + i for i in range(3)]
    for b in batches:
        bn(b)
    mean = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean)
    assert int(bn.num_batches_tracked) == 3
    state = bn.state_dict()
    other = SlimBatchNorm2d(4, momentum=None)
    other.load_state_dict(state)  # the count continues from the loaded buffer
    other(batches[0])
    assert int(other.num_batches_tracked) == 4
    torch.testing.assert_close(other.running_mean, (3 * mean + batches[0].mean((0, 2, 3))) / 4)


def test_primed_momentum_trains_exactly_as_lazy_buffers():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5)) for _ in range(3)]
    lazy_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    fused = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4, fused=True)
    lazy = torch.optim.SGD(lazy_params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    assert prime_momentum(fused) == 3 and prime_momentum(lazy) == 0
    for step in range(4):
        used = [i for i in range(3) if (i + step) % 2 == 0 or i == 2]  # parameters join at different steps
        for group, opt in ((params, fused), (lazy_params, lazy)):
            opt.zero_grad(set_to_none=True)
            sum((group[i] ** 2).sum() for i in used).backward()
            opt.step()
    for a, b in zip(params, lazy_params):
        torch.testing.assert_close(a, b)
