import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hyctas_lightning.cli import main
from hyctas_lightning.data import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, SyntheticStreetDataModule
from hyctas_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from hyctas_lightning.evaluation import format_iou_table, mean_iou, per_class_iou, segment
from hyctas_lightning.training import SegmentationModule
from hyctas_lightning.training.prediction import colourise, default_palette, denormalise

ROOT = Path(__file__).resolve().parents[1]
DEMO = ["--config", str(ROOT / "configs/demo/retrain.yaml"),
        "--model.init_args.arch=hyctas_s",
        "--data.init_args.train_samples=96", "--data.init_args.val_samples=8", "--data.init_args.test_samples=16",
        "--data.init_args.size=[96,192]", "--trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The demo recipe, shortened: a HyCTAS-S trained for a few epochs by `hyctas fit`, in a scratch folder."""
    folder = tmp_path_factory.mktemp("retrain")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        main(["fit", *DEMO, "--trainer.max_epochs=12"])
    ckpt = folder / "runs/demo/retrain/checkpoints/last.ckpt"
    assert ckpt.is_file()
    return folder, ckpt


def test_single_pass_is_the_networks_logits_and_tta_averages_probabilities():
    net = torch.nn.Conv2d(3, 4, 3, padding=1).eval()
    x = torch.randn(2, 3, 37, 50)
    with torch.no_grad():
        assert torch.equal(segment(net, x), net(x))
        scores = segment(net, x, scales=(0.5, 1.0, 1.5), flip=True)
    assert scores.shape == (2, 4, 37, 50)
    torch.testing.assert_close(scores.sum(1), torch.ones(2, 37, 50))


def test_flip_and_multiscale_keep_shapes_and_keep_or_improve_miou(run):
    _, ckpt = run
    module = SegmentationModule.load_from_checkpoint(ckpt).eval()
    data = SyntheticStreetDataModule(test_samples=16, size=(96, 192), batch_size=8)
    batches = list(data.test_dataloader())
    scores = {}
    for name, scales, flip in (("single", (1.0,), False), ("flip", (1.0,), True),
                               ("ms+flip", (0.75, 1.0, 1.25), True)):
        metric = per_class_iou(8)
        with torch.no_grad():
            for batch in batches:
                out = segment(module.net, batch["image"], scales, flip)
                assert out.shape == (8, 8, 96, 192)
                metric.update(out.argmax(1), batch["mask"])
        scores[name] = mean_iou(metric.compute()).item()
    assert scores["single"] > 0.2, scores  # four times chance: training worked
    # a network of 12 short epochs gains little from test-time augmentation, but a misaligned flip or scale (the
    # faults this guards against) costs it many points: allow one point of noise
    assert scores["flip"] >= scores["single"] - 0.01, scores
    assert scores["ms+flip"] >= scores["single"] - 0.01, scores


def test_hyctas_test_prints_the_per_class_table(run, capfd, caplog, monkeypatch):
    folder, ckpt = run
    monkeypatch.chdir(folder)
    with caplog.at_level(logging.INFO):
        main(["test", *DEMO, f"--ckpt_path={ckpt}", "--model.init_args.test_flip=true"])
    # the table is logged: to stderr, or to whatever stream an earlier test left Lightning's handler on
    captured = capfd.readouterr()
    out = captured.out + captured.err + caplog.text
    assert "hyctas_s: per-class IoU (%), scales [1.0] + flip" in out
    table = out[out.index("per-class IoU"):]
    assert all(name in table for name in SYNTHETIC_CLASSES) and "mIoU" in table


def test_hyctas_predict_writes_colour_masks_and_overlays(run, monkeypatch):
    folder, ckpt = run
    monkeypatch.chdir(folder)
    main(["predict", *DEMO, f"--ckpt_path={ckpt}"])
    out = folder / "runs/demo/retrain/predictions"
    masks, overlays = sorted(out.glob("*_mask.png")), sorted(out.glob("*_overlay.png"))
    assert len(masks) == len(overlays) == 16
    mask = np.asarray(Image.open(masks[0]))
    assert mask.shape == (96, 192, 3)
    colours = {tuple(c) for c in mask.reshape(-1, 3).tolist()}
    assert colours <= set(SYNTHETIC_PALETTE) and len(colours) > 2
    assert np.asarray(Image.open(overlays[0])).shape == (96, 192, 3)


def test_iou_table_marks_absent_classes_and_averages_the_rest():
    metric = per_class_iou(3)
    metric.update(torch.tensor([[0, 0, 1, 1]]), torch.tensor([[0, 0, 1, 255]]))
    ious = metric.compute()
    assert ious[:2].tolist() == [1.0, 1.0] and ious[2].isnan()
    table = format_iou_table(ious, ["road", "car", "sky"])
    rows = [line.split() for line in table.splitlines()]
    assert ["sky", "-"] in rows and ["road", "100.00"] in rows and rows[-1] == ["mIoU", "100.00"]
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        format_iou_table(ious, ["road", "car"])


def test_colours_and_denormalisation():
    labels = np.array([[0, 1], [2, 1]])
    rgb = colourise(labels, SYNTHETIC_PALETTE)
    assert rgb.dtype == np.uint8 and tuple(rgb[1, 0]) == SYNTHETIC_PALETTE[2]
    with pytest.raises(ValueError, match="label 2 has no colour"):
        colourise(labels, SYNTHETIC_PALETTE[:2])
    voc = default_palette(21)
    assert voc[:3] == [(0, 0, 0), (128, 0, 0), (0, 128, 0)] and len(set(voc)) == 21
    image = torch.rand(3, 4, 5)
    normalised = (image - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    back = denormalise(normalised, IMAGENET_MEAN, IMAGENET_STD)
    assert np.abs(back.astype(float) - image.permute(1, 2, 0).numpy() * 255).max() <= 0.51
