import random
from dataclasses import replace

import pytest
import torch
from torch import nn

from helpers import randomize_bn_
from hyctas_lightning.layers import ConvBNAct
from hyctas_lightning.models import ChildNet, SuperNet, register_head
from hyctas_lightning.models.blocks import resize
from hyctas_lightning.models.graph import walk
from hyctas_lightning.ops import register_op
from hyctas_lightning.search_space import SCALES, Architecture, ArchitectureError, Branch, SearchSpace, channels


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


def test_inherited_child_is_allocated_uninitialised_and_fully_overwritten(small_space, monkeypatch):
    """``from_supernet`` skips the random initialisation: the child's state equals one built with it (then
    overwritten), every tensor comes from the supernet (none is left as allocated, here NaN), and the global random
    stream is not drawn from."""
    supernet = randomize_bn_(SuperNet(small_space, num_classes=5)).eval()
    rng = random.Random(4)
    archs = [small_space.sample(rng, branches=1 + i % 3) for i in range(6)] + [small_space.largest()]
    empty = ChildNet.empty.__func__

    def initialised(cls, arch, num_classes, device="meta", **kwargs):
        return cls(arch, num_classes, **kwargs).to(device)

    def poisoned(cls, arch, num_classes, device="meta", **kwargs):
        net = empty(cls, arch, num_classes, device, **kwargs)
        for t in net.state_dict().values():
            t.fill_(float("nan") if t.is_floating_point() else -1)
        return net

    for arch in archs:
        state = torch.random.get_rng_state()
        child = ChildNet.from_supernet(supernet, arch)
        assert torch.equal(torch.random.get_rng_state(), state)
        with monkeypatch.context() as m:
            m.setattr(ChildNet, "empty", classmethod(initialised))
            reference = ChildNet.from_supernet(supernet, arch).state_dict()
            m.setattr(ChildNet, "empty", classmethod(poisoned))
            overwritten = ChildNet.from_supernet(supernet, arch).state_dict()
        assert child.state_dict().keys() == reference.keys()
        for name, t in child.state_dict().items():
            assert torch.equal(t, reference[name]) and torch.equal(overwritten[name], t), name


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


@pytest.mark.parametrize("head, classifier, stem_head_width, head_sharing", [
    ("progressive", "linear", 8 / 12, "combination"),
    ("progressive", "attention", 1.0, "combination"),
    ("plain", "linear", 8 / 12, "combination"),
    ("progressive", "linear", 8 / 12, "branch"),
])
def test_inheritance_is_exact_through_every_head_for_1_2_and_3_branches(head, classifier, stem_head_width,
                                                                         head_sharing):
    space = SearchSpace(layers=6, fch=4, head=head, classifier=classifier, stem_head_width=stem_head_width,
                        head_sharing=head_sharing)
    supernet = randomize_bn_(SuperNet(space, num_classes=5)).eval()
    assert supernet.stem.out_channels[8] == round(32 * stem_head_width)
    rng = random.Random(7)
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        for branches in (1, 2, 3):
            for arch in [space.sample(rng, branches=branches) for _ in range(2)]:
                child = ChildNet.from_supernet(supernet, arch).eval()
                assert (child.arch.head, child.arch.classifier) == (head, classifier)
                assert relative_error(child(x), supernet(x, arch)) < 1e-4


def test_branch_sharing_ties_each_final_strides_refinement_across_combinations():
    shared = SuperNet(SearchSpace(layers=6, fch=4, head_sharing="branch"), num_classes=5)
    apart = SuperNet(SearchSpace(layers=6, fch=4, head_sharing="combination"), num_classes=5)
    for stride in ("8", "16", "32"):
        modules = {id(head.branches[stride]) for head in shared.heads.values() if stride in head.branches}
        assert len(modules) == 1  # one refinement per final stride
        assert len({id(head.branches[stride]) for head in apart.heads.values() if stride in head.branches}) > 1
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(shared) < count(apart)
    # a step of the (8,) network moves the (8, 16, 32) head's stride-8 refinement too
    arch = next(a for a in (SearchSpace(layers=6, fch=4, head_sharing="branch").sample(random.Random(i), branches=1)
                            for i in range(50)) if a.branches[0].end_scale == 8)
    before = shared.heads["8_16_32"].branches["8"].proj.conv.weight.clone()
    shared(torch.randn(2, 3, 32, 32), arch).mean().backward()
    torch.optim.SGD(shared.parameters(), lr=1.0).step()
    assert not torch.equal(before, shared.heads["8_16_32"].branches["8"].proj.conv.weight)


def test_walk_returns_each_branchs_last_feature_at_every_stride():
    # the 32-branch leaves stride 8 at layer 0 (its stride-8 skip is the stem) and stride 16 after layer 2;
    # the 16-branch shares layer 0 with it, then stays at 16
    b32 = Branch(ops=["conv"] * 5, widths=[1.0] * 5, downs=[1, 0, 1, 0, 0], nodes=["pass"] * 5)
    b16 = Branch(ops=["conv"] * 5, widths=[1.0] * 5, downs=[1, 0, 0, 0, 0], nodes=["pass", "drop", "pass", "pass",
                                                                                   "pass"])
    b8 = Branch(ops=["mesa"] * 5, widths=[1.0] * 5, downs=[0] * 5, nodes=["pass"] * 5)
    arch = Architecture((b8, b16, b32), fch=4)
    name = lambda layer, b, v, s: f"L{layer}B{b}"  # noqa: E731
    feats = walk(arch, "stem", name, lambda layer, b, v, s, sib: v)
    assert feats == {8: {8: "L4B0"}, 16: {8: "stem", 16: "L4B1"}, 32: {8: "stem", 16: "L1B2", 32: "L4B2"}}
    child = ChildNet(arch, num_classes=3)
    # the 16- and 32-branch share layer 0's cell; auxiliary heads sit on the stride-16/32 features
    assert child.aux_features == {"cells.L4_B1": 64, "cells.L1_B2": 64, "cells.L4_B2": 128}


def test_progressive_head_refines_with_each_branchs_own_skip_features():
    arch = SearchSpace(layers=6, fch=4).sample(random.Random(1), branches=3)
    child = ChildNet(arch, num_classes=3).eval()
    head = child.head
    assert set(head.branches) == {"8", "16", "32"} and head.out_channels == 3 * 32
    assert len(head.branches["32"].refine) == 2 and len(head.branches["16"].refine) == 1
    assert head.branches["8"].proj is not None
    seen = {}
    handles = [m.register_forward_hook(lambda mod, inp, out, k=k: seen.__setitem__(k, inp[0].shape))
               for k, m in (("32_16", head.branches["32"].refine[0]), ("32_8", head.branches["32"].refine[1]),
                            ("16_8", head.branches["16"].refine[0]))]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = child.forward_features(x)
    for h in handles:
        h.remove()
    assert features.shape == (1, 96, 8, 8)
    assert seen["32_16"][-2:] == (4, 4) and seen["32_8"][-2:] == (8, 8) and seen["16_8"][-2:] == (8, 8)
    # each 3x3 refinement sees the projected map (head width) plus the branch's own skip feature
    def cell_channels(layer, b, c, s):
        branch = arch.branches[b]
        return channels(SCALES[s + branch.downs[layer]], 4, branch.widths[layer])

    skip = walk(arch, 32, cell_channels, lambda layer, b, c, s, siblings: c)  # the stem gives 32 channels
    assert seen["32_16"][1] == 64 + skip[32][16] and seen["32_8"][1] == 32 + skip[32][8]
    assert seen["16_8"][1] == 32 + skip[16][8]
    with torch.no_grad():
        assert torch.allclose(resize(child.classifier(features), (64, 64)), child(x), atol=1e-6)


def test_heads_and_classifiers_are_chosen_by_name_and_unknown_names_are_listed():
    arch = SearchSpace(layers=6, fch=4).sample(random.Random(2), branches=2)
    plain = ChildNet(arch, num_classes=3, head="plain", classifier="attention")
    assert type(plain.head).__name__ == "PlainHead" and type(plain.classifier).__name__ == "AttentionClassifier"
    assert plain.classifier.out_channels == ChildNet(arch, num_classes=3).classifier.out_channels == 3
    assert plain(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    with pytest.raises(KeyError, match="unknown aggregation head 'fpn'; registered: plain, progressive"):
        ChildNet(arch, num_classes=3, head="fpn")
    with pytest.raises(ArchitectureError, match="head: architecture has 'plain'"):
        SuperNet(SearchSpace(layers=6, fch=4), 3)(torch.randn(1, 3, 32, 32), replace(arch, head="plain"))


@register_head("test_sum", overwrite=True)
class SumHead(nn.Module):
    """A user head defined outside the package: every branch's final feature, projected and summed at stride 8."""

    def __init__(self, strides, channels, width):
        super().__init__()
        self.proj = nn.ModuleDict({str(s): ConvBNAct(channels[s][s], width[8], 1) for s in strides})
        self.out_channels = width[8]

    def forward(self, feats):
        size = next(iter(feats.values()))[8].shape[-2:]
        return sum(resize(self.proj[str(s)](f[s]), size) for s, f in feats.items())


def test_user_defined_head_plugs_into_supernet_and_child():
    space = SearchSpace(layers=5, fch=4, head="test_sum")
    supernet = randomize_bn_(SuperNet(space, num_classes=3)).eval()
    arch = space.sample(random.Random(4), branches=3)
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert relative_error(ChildNet.from_supernet(supernet, arch).eval()(x), supernet(x, arch)) < 1e-4
