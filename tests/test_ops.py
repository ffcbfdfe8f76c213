import pytest
import torch

from hyctas_lightning.layers import copy_prefix_
from hyctas_lightning.ops import OPS, build_op

BUILTIN = ["light_conv", "light_conv_2x", "conv", "conv_2x", "mesa"]


def test_builtin_ops_are_registered():
    assert set(BUILTIN) <= set(OPS.names())
    with pytest.raises(KeyError, match="unknown operator 'nope'"):
        OPS.get("nope")


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("stride", [1, 2])
def test_op_shapes_at_every_width(name, stride):
    op = build_op(name, 16, 24, stride).eval()
    for c_in, c_out in ((16, 24), (8, 12), (5, 7)):
        y = op(torch.randn(2, c_in, 15, 20), c_out)
        assert y.shape == (2, c_out, 8 if stride == 2 else 15, 10 if stride == 2 else 20)


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("stride", [1, 2])
def test_slimmed_op_equals_a_small_op_with_copied_weights(name, stride):
    big = build_op(name, 16, 24, stride)
    for p in big.parameters():
        torch.nn.init.normal_(p, std=0.2)
    big.eval()
    small = build_op(name, 8, 12, stride).eval()
    copy_prefix_(small, big)
    x = torch.randn(2, 8, 12, 12)
    torch.testing.assert_close(small(x), big(x, 12), rtol=1e-5, atol=1e-6)


def test_fresh_attention_cell_starts_as_its_bypass():
    op = build_op("mesa", 8, 8, 1).eval()
    x = torch.randn(1, 8, 6, 6)
    bypass = torch.relu(op.bypass(x))
    torch.testing.assert_close(op(x), bypass)
    with torch.no_grad():
        op.expand.bn.weight.fill_(1.0)
    assert not torch.allclose(op(x), bypass)


def test_attention_is_global():
    """Changing one far-away pixel changes every output pixel (maximal receptive field)."""
    op = build_op("mesa", 8, 16, 1).eval()
    with torch.no_grad():
        op.expand.bn.weight.fill_(1.0)
    x = torch.randn(1, 8, 10, 10)
    y = op(x)
    x2 = x.clone()
    x2[..., 9, 9] += 5.0
    changed = (op(x2) - y).abs().sum(1)[0]
    assert changed[0, 0] > 0 and (changed > 0).float().mean() > 0.9


def test_conv_receptive_field_is_local():
    op = build_op("conv", 8, 8, 1).eval()
    x = torch.randn(1, 8, 10, 10)
    x2 = x.clone()
    x2[..., 9, 9] += 5.0
    assert torch.equal(op(x)[..., 0, 0], op(x2)[..., 0, 0])
