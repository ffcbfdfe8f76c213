from pathlib import Path

import pytest
import torch

from hyctas_lightning.checkpoints import SEGMENTATION_KIND, compact_state_dict, expand_state_dict, save_compact
from hyctas_lightning.errors import ClassCountError
from hyctas_lightning.models import create_network, list_networks, load_architecture, load_network
from hyctas_lightning.models.zoo import ZOO_ENV

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


def test_zoo_networks_are_listed_and_built_by_name_with_their_weights(tmp_path, monkeypatch):
    checkpoint = retrain_checkpoint()
    checkpoint["hyctas"].update(classes=[f"c{i}" for i in range(11)], palette=[[i, i, i] for i in range(11)])
    save_compact(checkpoint, tmp_path / "zoo" / "synthetic" / "tiny.ckpt", max_mib=8)
    monkeypatch.setenv(ZOO_ENV, str(tmp_path / "zoo"))
    assert list_networks(pretrained=True) == ["tiny.synthetic"]
    assert "tiny.synthetic" in list_networks() and "hyctas_s" in list_networks()
    assert list_networks("hyctas_*", pretrained=True) == []

    net = create_network("tiny.synthetic", pretrained=True)
    reference, meta = load_network(tmp_path / "zoo" / "synthetic" / "tiny.ckpt")
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        assert torch.equal(net(x), reference(x))
    assert net.pretrained_cfg["classes"] == meta["classes"] == [f"c{i}" for i in range(11)]
    assert net.pretrained_cfg["palette"][3] == [3, 3, 3] and net.pretrained_cfg["weights"] == "fp16"
    assert create_network("tiny", pretrained=True).pretrained_cfg["name"] == "tiny"  # the name alone: its tag

    untrained = create_network("tiny.synthetic")  # the architecture, fresh weights, the zoo's class count
    assert untrained.state_dict().keys() == net.state_dict().keys() and not hasattr(untrained, "pretrained_cfg")
    assert create_network("tiny.synthetic", num_classes=3)(x).shape == (1, 3, 64, 128)

    with pytest.raises(ValueError, match="no weights 'tiny.cityscapes' in the model zoo: 'tiny' has the tag\\(s\\) "
                                         "synthetic \\(tiny.synthetic\\)"):
        create_network("tiny.cityscapes", pretrained=True)
    with pytest.raises(ValueError, match="name one of tiny.synthetic"):
        create_network("hyctas_s", pretrained=True)
    with pytest.raises(ClassCountError, match="trained for 11 classes, not 19"):
        create_network("tiny.synthetic", num_classes=19, pretrained=True)


def test_the_source_trees_model_zoo_is_listed():
    zoo = ROOT / "model_zoo"
    expected = {f"{p.stem}.{p.parent.name}" for p in zoo.glob("*/*.ckpt")}
    assert expected and expected <= set(list_networks(pretrained=True))
