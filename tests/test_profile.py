from torch import nn

from hyctas_lightning.evaluation import count_macs, count_params, profile_architecture
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
