"""The panoptic head on searched networks, and PanopticModule end to end on tiny synthetic scenes: fit, test (PQ
table and baseline), predict (COCO-format files that score like the test), checkpoints."""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image

from hyctas_lightning.checkpoints import PANOPTIC_KIND
from hyctas_lightning.data import SyntheticStreetDataModule
from hyctas_lightning.data.panoptic import PanopticTargetConfig
from hyctas_lightning.evaluation import fold_batchnorm
from hyctas_lightning.evaluation.panoptic_files import evaluate_panoptic_files, to_coco_panoptic
from hyctas_lightning.models import ChildNet, PanopticNetwork, load_architecture
from hyctas_lightning.models.blocks import resize
from hyctas_lightning.training import PanopticModule, PanopticWriter

S, L_ARCH = "hyctas_s", "hyctas_l"


@pytest.mark.parametrize("arch, stride", [(S, 8), (S, 4), (L_ARCH, 4)])
def test_head_on_childnets_at_output_stride_8_and_4(arch: str, stride: int) -> None:
    child = ChildNet(load_architecture(arch), num_classes=5, fch=4, output_stride=stride).eval()
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        feature = child.forward_features(images)
        assert feature.shape == (1, child.num_features, 64 // stride, 96 // stride)
        torch.testing.assert_close(child(images), resize(child.classifier(feature), (64, 96)))
        net = PanopticNetwork(child, num_classes=5).eval()
        out = net(images)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"semantic": (1, 5, 64, 96), "center": (1, 1, 64, 96),
                                                           "offset": (1, 2, 64, 96)}
    assert not any(p.numel() for p in net.backbone.classifier.parameters())


def test_offsets_are_scaled_to_input_pixels() -> None:
    """A feature-map offset of one cell is ``stride`` input pixels: the head multiplies by the upsampling factor."""
    net = PanopticNetwork(ChildNet(load_architecture(S), num_classes=3, fch=4, output_stride=8), 3).eval()
    with torch.no_grad():
        net.head.offset[-1].bias.copy_(torch.tensor([1.0, -2.0]))
        offset = net(torch.randn(1, 3, 32, 64))["offset"]
    torch.testing.assert_close(offset[0, 0], torch.full((32, 64), 8.0))
    torch.testing.assert_close(offset[0, 1], torch.full((32, 64), -16.0))
    assert fold_batchnorm(net) > 0  # the head's separable convs fold like the backbone's


def ground_truth_files(data: SyntheticStreetDataModule, folder: Path) -> tuple[Path, Path]:
    """The test split's panoptic ground truth written as COCO-format files (the synthetic data has no files)."""
    categories = data.panoptic_categories
    annotations = []
    for item in (data.dataset(data.test_split)[k] for k in range(len(data.dataset(data.test_split)))):
        png, segments = to_coco_panoptic(item["panoptic"].numpy(), [c["id"] for c in categories])
        (folder / "gt").mkdir(parents=True, exist_ok=True)
        Image.fromarray(png).save(folder / "gt" / f"{item['name']}.png")
        annotations.append({"image_id": item["image_id"], "file_name": f"{item['name']}.png",
                            "segments_info": segments})
    (folder / "gt.json").write_text(json.dumps({"annotations": annotations, "categories": categories}))
    return folder / "gt.json", folder / "gt"


def test_fit_test_predict_and_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    L.seed_everything(0)
    data = SyntheticStreetDataModule(train_samples=4, val_samples=2, test_samples=3, size=(64, 128), batch_size=2,
                                     panoptic=PanopticTargetConfig(sigma=2.0, small_instance_area=64))
    module = PanopticModule(arch=S, num_classes=8, fch=4, output_stride=4, warmup_iters=1, stuff_area=16,
                            nms_kernel=5, optimizer="adam", lr=1e-3, weight_decay=0.0)
    writer = PanopticWriter(str(tmp_path / "pred"))
    trainer = L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp_path), callbacks=[writer])
    trainer.fit(module, data)
    assert module.hparams.thing_ids == [4, 5, 6]  # taken from the data
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    meta = torch.load(ckpt, weights_only=False)["hyctas"]
    assert meta["kind"] == PANOPTIC_KIND and meta["panoptic"]["thing_ids"] == [4, 5, 6]

    caplog.clear()
    with caplog.at_level("INFO"):
        result = trainer.test(module, data, ckpt_path=str(ckpt), verbose=False, weights_only=False)[0]
    printed = caplog.text
    assert "panoptic quality" in printed and "person" in printed and "baseline with every connected thing" in printed
    assert 0 <= result["test/PQ"] <= 1 and "test_baseline/PQ" in result and "test/mIoU" in result

    trainer.predict(module, data, ckpt_path=str(ckpt), weights_only=False)
    document = json.loads((tmp_path / "pred" / "panoptic.json").read_text())
    assert len(document["annotations"]) == 3 and document["categories"][4]["name"] == "car"
    assert len(list((tmp_path / "pred").glob("*_overlay.png"))) == 3
    gt_json, gt_dir = ground_truth_files(data, tmp_path)
    predictions = tmp_path / "pred"
    scores, _ = evaluate_panoptic_files(gt_json, gt_dir, predictions / "panoptic.json", predictions / "panoptic")
    assert scores.summary("All")["pq"] == pytest.approx(result["test/PQ"], abs=1e-6)
    assert scores.summary("Things")["pq"] == pytest.approx(result["test/PQ_things"], abs=1e-6)


def test_panoptic_module_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="has no forward_features"):
        PanopticModule(network="lraspp_mobilenet_v3_large", num_classes=8)
    with pytest.raises(ValueError, match="single-scale without flipping"):
        PanopticModule(arch=S, num_classes=8, fch=4, test_flip=True)
    with pytest.raises(ValueError, match="optimizer"):
        PanopticModule(arch=S, num_classes=8, fch=4, optimizer="lamb")
    data = SyntheticStreetDataModule(train_samples=2, val_samples=2, size=(64, 128), batch_size=2,
                                     panoptic=PanopticTargetConfig())
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match=r"thing_ids is \[1\] but the data's thing classes are \[4, 5, 6\]"):
        trainer.fit(PanopticModule(arch=S, num_classes=8, fch=4, thing_ids=[1]), data)


def test_demo_config_through_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """fit / test / predict with configs/demo/panoptic.yaml, shrunk: checkpoints reload safely and the outputs
    land where the config says."""
    from hyctas_lightning.cli import main

    monkeypatch.chdir(tmp_path)
    config = Path(__file__).resolve().parents[1] / "configs/demo/panoptic.yaml"
    common = ["--config", str(config), "--data.init_args.train_samples=4", "--data.init_args.val_samples=2",
              "--data.init_args.test_samples=2", "--data.init_args.size=[64,128]", "--data.init_args.batch_size=2",
              "--trainer.enable_progress_bar=false"]
    assert main(["fit", *common, "--trainer.max_epochs=1"]) == 0
    ckpt = tmp_path / "runs/demo/panoptic/checkpoints/last.ckpt"
    assert (tmp_path / "runs/demo/panoptic/checkpoints/best.ckpt").is_file()
    with caplog.at_level("INFO"):
        assert main(["test", *common, f"--ckpt_path={ckpt}"]) == 0
    assert "panoptic quality (%)" in caplog.text and "baseline with every connected thing region" in caplog.text
    assert main(["predict", *common, f"--ckpt_path={ckpt}"]) == 0
    predictions = tmp_path / "runs/demo/panoptic/predictions"
    assert len(json.loads((predictions / "panoptic.json").read_text())["annotations"]) == 2
    assert len(list((predictions / "panoptic").glob("*.png"))) == 2


def test_weighted_losses() -> None:
    from hyctas_lightning.training.losses import segmentation_loss, weighted_regression_loss

    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    target[0, 0] = 255
    weight = torch.rand(2, 4, 5) + 0.5
    pixel = torch.nn.functional.cross_entropy(logits, target, ignore_index=255, reduction="none") * weight
    valid = pixel[target != 255]
    torch.testing.assert_close(segmentation_loss(logits, target, weight=weight), valid.mean())
    hardest = valid.sort(descending=True).values[: int(0.25 * valid.numel())].mean()
    torch.testing.assert_close(segmentation_loss(logits, target, bootstrap_ratio=0.25, weight=weight), hardest)
    prediction, goal = torch.randn(2, 2, 4, 5), torch.randn(2, 2, 4, 5)
    mask = (torch.rand(2, 4, 5) > 0.5).float()
    l1 = ((prediction - goal).abs().sum(1) * mask).sum() / mask.sum()  # summed over (y, x), averaged over pixels
    torch.testing.assert_close(weighted_regression_loss(prediction, goal, mask, "l1"), l1)
    assert weighted_regression_loss(prediction, goal, torch.zeros(2, 4, 5), "mse") == 0


def test_panoptic_heads_are_registered_by_name() -> None:
    from hyctas_lightning.models import PANOPTIC_HEADS, PanopticHead, register_panoptic_head

    assert PANOPTIC_HEADS.get("panoptic_deeplab") is PanopticHead

    @register_panoptic_head("constant_test_head", overwrite=True)
    class ConstantHead(torch.nn.Module):
        def __init__(self, in_channels: int, num_classes: int, **options) -> None:
            super().__init__()
            self.semantic = torch.nn.Conv2d(in_channels, num_classes, 1)

        def forward(self, feature, size):
            logits = resize(self.semantic(feature), size)
            return {"semantic": logits, "center": logits[:, :1] * 0, "offset": logits[:, :2] * 0}

    net = PanopticNetwork(ChildNet(load_architecture(S), 3, fch=4), 3, head="constant_test_head").eval()
    assert isinstance(net.head, ConstantHead) and net(torch.randn(1, 3, 64, 96))["offset"].shape == (1, 2, 64, 96)
