import random

import pytest
import torch
from torch import nn

from helpers import randomize_bn_
from hyctas_lightning.layers import ConvBNAct
from hyctas_lightning.models import ChildNet, SuperNet
from hyctas_lightning.ops import register_op
from hyctas_lightning.search_space import Architecture, ArchitectureError, SearchSpace


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_supernet_and_inherited_child_agree_on_100_architectures(small_space):
    supernet = randomize_bn_(SuperNet(small_space, num_classes=5)).eval()
    rng = random.Random(0)
    x = torch.randn(2, 3, 64, 96)
    archs = [small_space.sample(rng, branches=1 + i % 3) for i in range(100)]
    ops = {op for a in archs for b in a.branches for op in b.ops}
    nodes = {n for a in archs for b in a.branches for n in b.nodes}
    assert ops == set(small_space.ops) and nodes == {"pass", "fuse", "drop"}
    worst = 0.0
    with torch.no_grad():
        for arch in archs + [small_space.largest(), small_space.smallest()]:
            expected = supernet(x, arch)
            got = ChildNet.from_supernet(supernet, arch).eval()(x)
            assert got.shape == (2, 5, 64, 96)
            worst = max(worst, relative_error(got, expected))
    assert worst < 1e-4


def test_fresh_child_has_exactly_the_parameters_it_needs(small_space):
    rng = random.Random(3)
    x = torch.randn(2, 3, 64, 64)
    for i in range(12):
        arch = small_space.sample(rng, branches=1 + i % 3)
        child = ChildNet(arch, num_classes=4)
        child(x).sum().backward()
        unused = [n for n, p in child.named_parameters() if p.grad is None]
        assert not unused, f"{arch.hash}: parameters without gradient: {unused[:5]}"
        inherited = ChildNet.from_supernet(SuperNet(small_space, 4), arch)
        assert inherited.state_dict().keys() == child.state_dict().keys()


def test_prefix_sharing_runs_shared_layers_once(small_space):
    arch = small_space.largest()
    child = ChildNet(arch, num_classes=3)
    # layer 0: the 16- and 32-branches share their down-sampling cell
    assert {k for k in child.cells if k.startswith("L0_")} == {"L0_B0", "L0_B1"}
    assert len([k for k in child.cells if k.startswith("L1_")]) == 3


def test_supernet_trains_and_handles_odd_sizes(small_space):
    supernet = SuperNet(small_space, num_classes=3)
    arch = small_space.sample(random.Random(5), branches=3)
    x = torch.randn(2, 3, 70, 90)
    out = supernet(x, arch)
    assert out.shape == (2, 3, 70, 90)
    out.mean().backward()
    assert supernet.stem.conv.conv.weight.grad is not None


def test_supernet_rejects_architectures_outside_its_space(small_space):
    supernet = SuperNet(small_space, num_classes=3)
    too_deep = SearchSpace(layers=8, fch=4).sample(random.Random(0))
    with pytest.raises(ArchitectureError, match="does not fit this supernet"):
        supernet(torch.randn(1, 3, 32, 32), too_deep)
    with pytest.raises(ArchitectureError, match="fch"):
        supernet(torch.randn(1, 3, 32, 32), SearchSpace(layers=6, fch=8).smallest())


def test_child_output_stride_4_and_fch_override(small_space):
    arch = small_space.sample(random.Random(2), branches=2)
    child = ChildNet(arch, num_classes=3, fch=6, output_stride=4)
    assert child.arch.fch == 6 and child.decoder is not None
    assert child(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    with pytest.raises(ArchitectureError, match="output_stride"):
        ChildNet.from_supernet(SuperNet(small_space, 3), Architecture(arch.branches, fch=4, output_stride=4))


@register_op("test_conv5x5", overwrite=True)
class Conv5x5(nn.Module):
    """A user op defined outside the package: a slimmable 5x5 conv-BN-ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = ConvBNAct(c_in, c_out, 5, stride)

    def forward(self, x, out_channels=None):
        return self.conv(x, out_channels)


def test_user_defined_op_is_searchable_without_editing_the_package():
    space = SearchSpace(layers=5, fch=4, ops=("light_conv", "mesa", "test_conv5x5"), largest_op="test_conv5x5",
                        smallest_op="light_conv")
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(20)]
    assert any("test_conv5x5" in b.ops for a in archs for b in a.branches)
    supernet = randomize_bn_(SuperNet(space, num_classes=3)).eval()
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        for arch in archs:
            assert relative_error(ChildNet.from_supernet(supernet, arch).eval()(x), supernet(x, arch)) < 1e-4
    assert Architecture.from_json(archs[0].to_json()) == archs[0]


PLUGIN = '''
from torch import nn
from hyctas_lightning.layers import ConvBNAct
from hyctas_lightning.ops import register_op


@register_op("plugin_dilated")
class Dilated(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv = ConvBNAct(c_in, c_out, 3, stride)
        self.conv.conv.dilation, self.conv.conv.padding = (2, 2), (2, 2)

    def forward(self, x, out_channels=None):
        return self.conv(x, out_channels)
'''


def test_search_space_imports_user_plugins(tmp_path, monkeypatch):
    (tmp_path / "my_user_ops.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    space = SearchSpace(layers=4, fch=4, ops=("conv", "plugin_dilated"), largest_op="plugin_dilated",
                        smallest_op="conv", plugins=("my_user_ops",))
    arch = space.largest()
    assert set(arch.branches[0].ops) == {"plugin_dilated"}
    supernet = randomize_bn_(SuperNet(space, num_classes=3)).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert relative_error(ChildNet.from_supernet(supernet, arch).eval()(x), supernet(x, arch)) < 1e-4
