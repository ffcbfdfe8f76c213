from pathlib import Path

import pytest
import torch

from hyctas_lightning.checkpoints import SEGMENTATION_KIND, compact_state_dict, expand_state_dict, save_compact
from hyctas_lightning.models import create_network, load_architecture, load_network

ROOT = Path(__file__).resolve().parents[1]


def retrain_checkpoint(fch: int = 4) -> dict:
    arch = load_architecture("hyctas_s")
    spec = {"arch": arch.to_dict(), "network": None, "num_classes": 11, "fch": fch, "output_stride": None}
    net = create_network(spec["arch"], spec["num_classes"], fch=fch)
    return {"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "hyctas": {"kind": SEGMENTATION_KIND, "network": spec, "name": "s", "classes": None, "palette": None,
                       "ignore_index": 255}}


def test_int8_round_trip_is_close_and_keeps_integer_buffers():
    state = {"w": torch.randn(8, 4, 3, 3), "b": torch.randn(8), "n": torch.tensor(7)}
    back = expand_state_dict(compact_state_dict(state, int8=True))
    assert set(back) == set(state) and back["n"].item() == 7 and back["w"].dtype == torch.float32
    assert (back["w"] - state["w"]).abs().max() <= state["w"].abs().amax((1, 2, 3)).max() / 127
    assert torch.allclose(back["b"], state["b"], atol=1e-2)


def test_compact_checkpoint_loads_as_a_retrain_checkpoint(tmp_path):
    checkpoint = retrain_checkpoint()
    path = tmp_path / "zoo.ckpt"
    written = save_compact(checkpoint, path, max_mib=8)
    assert written["hyctas"]["weights"] == "fp16"
    net, meta = load_network(path)
    reference = create_network(checkpoint["hyctas"]["network"]["arch"], 11, fch=4)
    reference.load_state_dict({k[4:]: v for k, v in checkpoint["state_dict"].items()})
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        a, b = net(x), reference.eval()(x)
    assert (a - b).norm() / b.norm() < 1e-2


def test_falls_back_to_int8_and_refuses_what_cannot_fit(tmp_path):
    checkpoint = retrain_checkpoint(fch=12)  # about 6 M parameters: 12 MiB in fp16
    written = save_compact(checkpoint, tmp_path / "s.ckpt", max_mib=8)
    assert written["hyctas"]["weights"] == "int8" and (tmp_path / "s.ckpt").stat().st_size < 8 * 2**20
    with pytest.raises(ValueError, match="does not fit"):
        save_compact(checkpoint, tmp_path / "t.ckpt", max_mib=1)
