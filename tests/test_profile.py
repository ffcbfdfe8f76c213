import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hyctas_lightning.evaluation.profile as profiling
from hyctas_lightning.evaluation import count_macs, count_params, profile_architecture
from hyctas_lightning.models import ChildNet, load_architecture
from hyctas_lightning.search_space import SearchSpace


def test_macs_of_a_plain_conv_match_the_formula():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Conv2d(8, 4, 1, stride=2, bias=False))
    macs = count_macs(model, (32, 64))
    assert macs == 3 * 8 * 9 * 32 * 64 + 8 * 4 * 16 * 32
    assert count_params(model) == 3 * 8 * 9 + 8 * 4
    assert next(model.parameters()).device.type == "cpu"  # profiling leaves the model where it was


def test_profile_scales_with_resolution_and_width():
    space = SearchSpace(layers=6, fch=4)
    arch = space.smallest()
    small, big = profile_architecture(arch, (128, 256)), profile_architecture(arch, (256, 512))
    assert small.params_m == big.params_m
    assert 3.9 < big.macs_g / small.macs_g < 4.1
    assert profile_architecture(space.largest(), (128, 256)).macs_g > 5 * small.macs_g


def test_attention_matmuls_are_counted():
    """F.scaled_dot_product_attention's two products (Q K^T and A V) are part of the count."""
    n, d_qk, d_v = 64, 8, 32

    class Attend(nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = nn.Parameter(torch.zeros(1))  # count_macs needs a parameter to find the device

        def forward(self, x):
            q = x.flatten(2).transpose(1, 2)[..., :d_qk].unsqueeze(1)
            v = x.flatten(2).transpose(1, 2).unsqueeze(1)
            return F.scaled_dot_product_attention(q, q, v)

    assert count_macs(Attend(), (8, 8), in_chans=d_v) == n * n * d_qk + n * n * d_v


def test_parts_counted_once_give_the_full_traces_numbers(small_space):
    """Profiling reuses the count of a stem, cell, fusion node, head or classifier already traced with the same
    build arguments and input shapes: every candidate's numbers still equal a trace of its whole network, and a
    candidate seen again traces nothing new."""
    rng = random.Random(2)
    archs = [small_space.sample(rng, branches=1 + i % 3) for i in range(10)] + [small_space.largest()]
    for size in ((64, 96), (65, 98)):  # odd sizes round up at each stride
        for arch in archs:
            got = profile_architecture(arch, size, num_classes=5, stem_head_width=0.5)
            with torch.device("meta"):
                whole = ChildNet(arch, 5, stem_head_width=0.5)
            assert got.macs_g == count_macs(whole, size) / 1e9
            assert got.params_m == count_params(whole) / 1e6
    known = len(profiling._PART_FLOPS)
    again = profile_architecture(archs[3], (64, 96), num_classes=5, stem_head_width=0.5)
    assert len(profiling._PART_FLOPS) == known and again.macs_g > 0


def test_counting_by_parts_leaves_the_model_as_it_was(small_space):
    net = ChildNet.empty(small_space.largest(), 4)
    modules = dict(net.named_modules())
    assert count_macs(net, (32, 48), parts=net.parts) == count_macs(net, (32, 48))
    assert dict(net.named_modules()) == modules


# (params M, mult-adds G) at 1024x2048, 19 classes, without auxiliary heads: the released files as the release's
# own builder counts them (attention included), and the paper's table 2 for the paper-size presets
PRESET_REFERENCES = {
    "hyctas_s": (8.05, 53.2), "hyctas_m": (6.29, 78.6), "hyctas_l": (44.7, 510.5),
    "hyctas_s_paper": (1.5, 13.0), "hyctas_m_paper": (2.4, 29.4),
}


@pytest.mark.parametrize("name", sorted(PRESET_REFERENCES))
def test_presets_are_sized_within_25_percent_of_their_reference(name):
    arch = load_architecture(name)
    profile = profile_architecture(arch, (1024, 2048), num_classes=19)
    params, macs = PRESET_REFERENCES[name]
    assert 0.75 * params <= profile.params_m <= 1.25 * params, profile
    assert 0.75 * macs <= profile.macs_g <= 1.25 * macs, profile
