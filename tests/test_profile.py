import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyctas_lightning.evaluation import count_macs, count_params, profile_architecture
from hyctas_lightning.models import load_architecture
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
