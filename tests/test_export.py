from pathlib import Path

import lightning as L
import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from helpers import randomize_bn_
from hyctas_lightning.cli import main
from hyctas_lightning.data import SyntheticStreetDataModule
from hyctas_lightning.deploy import export_network
from hyctas_lightning.evaluation import count_batchnorms, fold_batchnorm
from hyctas_lightning.models import ChildNet, create_network, load_architecture
from hyctas_lightning.training import SegmentationModule

ROOT = Path(__file__).resolve().parents[1]
PRESET = {n: f"hyctas_{n}" for n in "sml"}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name", ["l", "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"])
def test_bn_folding_removes_every_batchnorm_and_keeps_outputs(name):
    net = (ChildNet(load_architecture(PRESET[name]), 5, fch=4) if name in PRESET else create_network(name, 5))
    net = randomize_bn_(net)
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        reference = net(x)
        before = count_batchnorms(net)
        assert fold_batchnorm(net) == before > 0
        assert count_batchnorms(net) == 0
        assert rel(net(x), reference) < 1e-5


def test_bn_folding_refuses_a_training_network():
    with pytest.raises(ValueError, match="model.eval"):
        fold_batchnorm(ChildNet(load_architecture(PRESET["s"]), 5, fch=4))


def test_onnx_export_matches_pytorch_at_fixed_and_dynamic_sizes(tmp_path):
    net = randomize_bn_(ChildNet(load_architecture(PRESET["s"]), 5, fch=4, output_stride=4))
    result = export_network(net, tmp_path / "s.onnx", size=(64, 128), dynamic=True)
    assert result.format == "onnx" and result.folded > 0 and result.rel_err < 1e-4
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    for shape in ((1, 3, 64, 128), (1, 3, 75, 101)):
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = net(x)
        got = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
        assert got.shape == expected.shape and rel(got, expected) < 1e-4


@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_torchscript_and_torch_export_match_pytorch(tmp_path, suffix):
    net = randomize_bn_(ChildNet(load_architecture(PRESET["s"]), 5, fch=4))
    result = export_network(net, tmp_path / f"s{suffix}", size=(64, 128))
    assert result.rel_err < 1e-4 and result.path.stat().st_size > 0


def test_export_rejects_unknown_formats(tmp_path):
    with pytest.raises(ValueError, match="unknown format; use one of .onnx"):
        export_network(nn.Conv2d(3, 2, 1), tmp_path / "x.tflite", size=(8, 8))


def test_hyctas_export_from_arch_and_from_a_trained_checkpoint(tmp_path, capsys):
    out = tmp_path / "arch.onnx"
    assert main(["export", "--arch", PRESET["s"], "--fch", "4", "--num_classes", "8", "--size", "64", "128",
                 "--out", str(out)]) == 0
    assert "exported hyctas_s" in capsys.readouterr().out and out.is_file()

    module = SegmentationModule(PRESET["s"], num_classes=8, fch=4, warmup_iters=0)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=1)
    trainer.fit(module, SyntheticStreetDataModule(train_samples=4, val_samples=2, size=(64, 128), batch_size=2))
    ckpt = tmp_path / "trained.ckpt"
    trainer.save_checkpoint(ckpt)
    onnx_path = tmp_path / "trained.onnx"
    assert main(["export", "--ckpt", str(ckpt), "--size", "64", "128", "--out", str(onnx_path)]) == 0
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        expected = module.eval().net(x).numpy()
    got = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 1e-4


def test_hyctas_export_reports_bad_input(tmp_path, capsys):
    supernet = tmp_path / "supernet.ckpt"
    torch.save({"hyctas": {"kind": "hyctas-supernet"}}, supernet)
    assert main(["export", "--ckpt", str(supernet), "--out", str(tmp_path / "x.onnx")]) == 4  # EXIT_CHECKPOINT
    assert "supernet checkpoint, not a retrained network" in capsys.readouterr().err
    assert main(["export", "--arch", PRESET["s"], "--network", "lraspp_mobilenet_v3_large",
                 "--out", str(tmp_path / "x.onnx")]) == 2
    assert "exactly one of --arch" in capsys.readouterr().err
