"""Panoptic samples from hand-made copies in the official layouts (COCO panoptic; Cityscapes instanceIds and the
cityscapesPanoptic files made by cityscapesscripts itself) and from the synthetic streets."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fixtures_data as fx
from hyctas_lightning.data import (
    CamVidDataModule,
    CityscapesDataModule,
    CocoPanopticDataModule,
    SyntheticStreetDataModule,
    TransformConfig,
)
from hyctas_lightning.data.base import pad_collate
from hyctas_lightning.data.labels import LABEL_DIVISOR, VOID
from hyctas_lightning.data.panoptic import PanopticTargetConfig
from hyctas_lightning.data.synthetic import SYNTHETIC_CLASSES, render_panoptic_scene, render_scene
from hyctas_lightning.evaluation.panoptic_files import evaluate_panoptic_files, id_to_rgb, to_coco_panoptic

PLAIN = TransformConfig()
PANOPTIC = PanopticTargetConfig(sigma=1.0)


def test_coco_panoptic_ids_crowds_and_image_ids(tmp_path: Path) -> None:
    fx.coco_panoptic(tmp_path)
    dm = CocoPanopticDataModule(root=str(tmp_path), transforms=PLAIN, panoptic=PANOPTIC)
    item = dm.dataset("val")[0]
    np.testing.assert_array_equal(item["panoptic"].numpy(), fx.COCO_PANOPTIC)
    np.testing.assert_array_equal(item["mask"].numpy(), fx.COCO_EXPECTED)  # the crowd stays ignored here
    assert item["image_id"] == 140 and item["image_size"] == (4, 6)
    assert dm.thing_classes == ("train", "person") and dm.thing_ids == (0, 1)
    assert [c["id"] for c in dm.panoptic_categories] == [7, 1, 184]
    assert [c["isthing"] for c in dm.panoptic_categories] == [1, 1, 0]
    # the person (1000) gets a centre and offsets; the train crowd (5000) none
    assert item["center"][0, 0:3, 0:3].max() == 1.0 and item["center_weight"][1:3, 4:6].sum() == 0
    assert item["offset_weight"].sum() == (fx.COCO_IDS == 1000).sum()


def test_cityscapes_instance_ids(tmp_path: Path) -> None:
    expected = fx.cityscapes_panoptic(tmp_path)
    dm = CityscapesDataModule(root=str(tmp_path), transforms=PLAIN, panoptic=PANOPTIC)
    for split in ("train", "val"):
        item = dm.dataset(split)[0]
        semantic, panoptic = expected[item["name"]]
        np.testing.assert_array_equal(item["panoptic"].numpy(), panoptic, err_msg=split)
        np.testing.assert_array_equal(item["mask"].numpy(), semantic, err_msg=split)
    assert dm.thing_ids == tuple(range(11, 19))
    assert [c["id"] for c in dm.panoptic_categories][:3] == [7, 8, 11]  # labelIds, as the official evaluation


def test_cityscapes_panoptic_files_from_cityscapesscripts(tmp_path: Path) -> None:
    """createPanopticImgs' own output reads to the same maps as the instanceIds, and predictions written from
    those maps with the data's categories score PQ 1 against it."""
    pytest.importorskip("cityscapesscripts")
    with contextlib.redirect_stdout(io.StringIO()):
        expected = fx.cityscapes_panoptic(tmp_path, convert=True)
    for png in tmp_path.glob("gtFine/*/*/*_instanceIds.png"):
        png.unlink()  # only the panoptic files remain to read instances from
    dm = CityscapesDataModule(root=str(tmp_path), transforms=PLAIN, panoptic=PANOPTIC)
    item = dm.dataset("val")[0]
    np.testing.assert_array_equal(item["panoptic"].numpy(), expected[item["name"]][1])

    categories = [c["id"] for c in dm.panoptic_categories]
    png, segments = to_coco_panoptic(item["panoptic"].numpy(), categories)
    (tmp_path / "pred").mkdir()
    Image.fromarray(png).save(tmp_path / "pred" / "p.png")
    (tmp_path / "pred.json").write_text(json.dumps({"annotations": [
        {"image_id": item["image_id"], "file_name": "p.png", "segments_info": segments}]}))
    gt_json = json.loads((tmp_path / "gtFine" / "cityscapes_panoptic_val.json").read_text())
    gt_json["annotations"] = [a for a in gt_json["annotations"] if a["image_id"] == item["image_id"]]
    (tmp_path / "gt.json").write_text(json.dumps(gt_json))
    scores, _ = evaluate_panoptic_files(tmp_path / "gt.json", tmp_path / "gtFine" / "cityscapes_panoptic_val",
                                        tmp_path / "pred.json", tmp_path / "pred")
    # road, sidewalk, building, sky, person, car and bicycle, all matched exactly
    assert scores.summary("All") == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 7}


def test_synthetic_instances_are_the_things() -> None:
    image, mask, instances = render_panoptic_scene(3, (96, 160))
    plain_image, plain_mask = render_scene(3, (96, 160))
    assert np.array_equal(image, plain_image) and np.array_equal(mask, plain_mask)
    things = np.isin(mask, [SYNTHETIC_CLASSES.index(n) for n in ("car", "pole", "person")])
    assert ((instances > 0) == things).all() and len(np.unique(instances)) > 3
    for instance in np.unique(instances[instances > 0]):
        assert len(np.unique(mask[instances == instance])) == 1  # one class per instance
    dm = SyntheticStreetDataModule(train_samples=2, val_samples=2, size=(64, 128), batch_size=2, panoptic=PANOPTIC)
    item = dm.dataset("val")[1]
    assert ((item["panoptic"] // LABEL_DIVISOR) == item["mask"]).all()
    assert dm.thing_ids == (4, 5, 6)


def test_denser_streets_have_more_touching_instances() -> None:
    """``density`` scales the objects per scene (1 leaves every scene as it was): busy streets are where instance
    separation matters, so every connected thing region is less often one instance."""
    default = [render_panoptic_scene(seed, (64, 128)) for seed in range(12)]
    busy = [render_panoptic_scene(seed, (64, 128), density=3.0) for seed in range(12)]
    assert all(np.array_equal(a[0], render_scene(seed, (64, 128))[0]) for seed, a in enumerate(default))

    def merged(scenes: list) -> float:
        """Share of instances that touch another instance of their class (4-neighbours)."""
        touching = total = 0
        for _, mask, instances in scenes:
            ids = mask.astype(np.int64) * LABEL_DIVISOR + instances
            pairs = np.concatenate([np.stack([ids[:, 1:], ids[:, :-1]], -1).reshape(-1, 2),
                                    np.stack([ids[1:], ids[:-1]], -1).reshape(-1, 2)])
            pairs = pairs[(pairs[:, 0] != pairs[:, 1]) & (pairs[:, 0] // LABEL_DIVISOR == pairs[:, 1] // LABEL_DIVISOR)
                          & (pairs % LABEL_DIVISOR > 0).all(1)]
            touching += len(np.unique(pairs))
            total += len(np.unique(instances)) - 1
        return touching / total

    assert sum(len(np.unique(s[2])) for s in busy) > 2 * sum(len(np.unique(s[2])) for s in default)
    assert merged(busy) > merged(default) + 0.1
    with pytest.raises(ValueError, match="density must be positive"):
        SyntheticStreetDataModule(density=0.0)


def test_batches_pad_panoptic_maps_with_void_and_weights_with_zero(tmp_path: Path) -> None:
    dm = SyntheticStreetDataModule(val_samples=2, size=(64, 128), panoptic=PANOPTIC)
    small, large = dm.dataset("val")[0], dm.dataset("val")[1]
    small = {k: (v[..., :40, :100] if isinstance(v, torch.Tensor) else v) for k, v in small.items()}
    batch = pad_collate([small, large])
    assert batch["panoptic"].shape == (2, 64, 128) and batch["offset"].shape == (2, 2, 64, 128)
    assert (batch["panoptic"][0, 40:] == VOID).all() and (batch["mask"][0, :, 100:] == 255).all()
    assert batch["center_weight"][0, 40:].sum() == 0 and batch["offset_weight"][0, :, 100:].sum() == 0
    assert batch["image_id"] == ["val_000000", "val_000001"]


def test_datasets_without_instances_refuse_panoptic_targets(tmp_path: Path) -> None:
    fx.camvid(tmp_path)
    with pytest.raises(ValueError, match="CamVidDataset has no instance annotations"):
        CamVidDataModule(root=str(tmp_path), panoptic=PANOPTIC).dataset("train")


def test_bad_instance_files_are_named(tmp_path: Path) -> None:
    fx.cityscapes_panoptic(tmp_path)
    bad = next(tmp_path.glob("gtFine/train/*/*_instanceIds.png"))
    fx.write_uint16_png(bad, np.full((6, 8), 40000))  # labelId 40 does not exist
    with pytest.raises(ValueError, match="instanceIds.png has label ids outside 0..33"):
        CityscapesDataModule(root=str(tmp_path), panoptic=PANOPTIC).dataset("train")[0]
    fx.coco_panoptic(tmp_path / "coco")
    Image.fromarray(id_to_rgb(np.full((4, 6), 1000))).save(next((tmp_path / "coco").glob("annotations/*val*/*.png")))
    with pytest.raises(ValueError, match="segment ids in the PNG but not in segments_info|does not match"):
        CocoPanopticDataModule(root=str(tmp_path / "coco"), panoptic=PANOPTIC).dataset("val")[0]
