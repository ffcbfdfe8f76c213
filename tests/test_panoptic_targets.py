"""Panoptic targets on hand-made instances: centres of mass, Gaussian peaks, offsets and weights; flips and crops
keep them consistent because they are computed after augmentation; the transforms carry instance ids."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hyctas_lightning.data import SegmentationTransform, TransformConfig
from hyctas_lightning.data.labels import IGNORE_INDEX, LABEL_DIVISOR, VOID
from hyctas_lightning.data.panoptic import PanopticTargetConfig, panoptic_targets, thing_mask

X = IGNORE_INDEX
ROAD, CAR, PERSON = 0, 1, 2
IS_THING = thing_mask(3, [CAR, PERSON])


def scene() -> tuple[torch.Tensor, torch.Tensor]:
    """A 12 x 16 road with two cars (an L shape and a 2 x 3 box), a one-pixel person, a car crowd and void."""
    panoptic = np.full((12, 16), ROAD * LABEL_DIVISOR, np.int64)
    panoptic[1:4, 2:4] = CAR * LABEL_DIVISOR + 1
    panoptic[3, 4:7] = CAR * LABEL_DIVISOR + 1           # the L's foot: centre of mass off the pixels' middle
    panoptic[6:8, 9:12] = CAR * LABEL_DIVISOR + 2
    panoptic[10, 1] = PERSON * LABEL_DIVISOR + 1
    panoptic[9:12, 12:15] = CAR * LABEL_DIVISOR           # crowd: a thing class with instance 0
    panoptic[0, 10:16] = VOID
    semantic = np.where(panoptic == VOID, X, panoptic // LABEL_DIVISOR)
    semantic[9:12, 12:15] = X                             # COCO ignores crowds in the semantic mask
    return torch.from_numpy(semantic), torch.from_numpy(panoptic)


# Centres of mass (y, x), counted by hand: car 1 has pixels (1..3, 2..3) and (3, 4..6).
CAR1 = ((1 + 1 + 2 + 2 + 3 + 3 + 3 * 3) / 9, (2 + 3) * 3 / 9 + (4 + 5 + 6) / 9)
CAR2 = (6.5, 10.0)
PERSON1 = (10.0, 1.0)


def test_centres_offsets_and_weights_of_hand_made_instances() -> None:
    semantic, panoptic = scene()
    t = panoptic_targets(semantic, panoptic, IS_THING, PanopticTargetConfig(sigma=2.0, small_instance_area=7))
    ys, xs = np.mgrid[0:12, 0:16]
    for instance, (cy, cx) in ((CAR * LABEL_DIVISOR + 1, CAR1), (CAR * LABEL_DIVISOR + 2, CAR2),
                               (PERSON * LABEL_DIVISOR + 1, PERSON1)):
        pixels = panoptic.numpy() == instance
        np.testing.assert_allclose(t["offset"][0].numpy()[pixels], cy - ys[pixels], atol=1e-5)
        np.testing.assert_allclose(t["offset"][1].numpy()[pixels], cx - xs[pixels], atol=1e-5)
        assert t["center"][0, round(cy), round(cx)] == 1.0
    assert (t["center"] == 1.0).sum() == 3 and t["center"].max() == 1.0
    # the Gaussian: sigma 2 one pixel right of car 2's peak at (6, 10) (6.5 rounds to even)
    assert t["center"][0, 6, 11].item() == pytest.approx(np.exp(-1 / 8), abs=1e-6)
    things = (panoptic.numpy() // LABEL_DIVISOR > 0) & (panoptic.numpy() % LABEL_DIVISOR > 0)
    assert (t["offset"].numpy()[:, ~things] == 0).all()
    np.testing.assert_array_equal(t["offset_weight"].numpy(), things)
    crowd_or_void = np.zeros((12, 16), bool)
    crowd_or_void[9:12, 12:15] = crowd_or_void[0, 10:16] = True
    np.testing.assert_array_equal(t["center_weight"].numpy(), ~crowd_or_void)
    # small instances (under 7 pixels: car 2 has 6, the person 1) weigh 3 in the semantic loss, car 1 (9) does not
    small = np.isin(panoptic.numpy(), [CAR * LABEL_DIVISOR + 2, PERSON * LABEL_DIVISOR + 1])
    np.testing.assert_array_equal(t["semantic_weight"].numpy(), np.where(small, 3.0, 1.0))
    np.testing.assert_array_equal(t["panoptic"].numpy(), panoptic.numpy())  # crowd and void kept as they are


def test_crowd_gets_no_centre() -> None:
    semantic, panoptic = scene()
    t = panoptic_targets(semantic, panoptic, IS_THING, PanopticTargetConfig(sigma=1.0))
    assert t["center"][0, 9:12, 12:15].max() < 0.5  # only the tails of car 2's Gaussian reach it


def test_flip_mirrors_every_target() -> None:
    semantic, panoptic = scene()
    config = PanopticTargetConfig(sigma=2.0)
    t = panoptic_targets(semantic, panoptic, IS_THING, config)
    f = panoptic_targets(semantic.flip(-1), panoptic.flip(-1), IS_THING, config)
    for key in ("center", "center_weight", "offset_weight", "semantic_weight", "panoptic"):
        torch.testing.assert_close(f[key], t[key].flip(-1), msg=key)
    torch.testing.assert_close(f["offset"][0], t["offset"][0].flip(-1))
    torch.testing.assert_close(f["offset"][1], -t["offset"][1].flip(-1))  # x offsets change sign


def test_crop_recentres_cut_instances() -> None:
    """Targets of a crop are the crop's own: an instance cut in half points at the centre of its visible part."""
    semantic, panoptic = scene()
    config = PanopticTargetConfig(sigma=2.0)
    full = panoptic_targets(semantic, panoptic, IS_THING, config)
    rows, cols = slice(2, 12), slice(0, 11)   # keeps car 1's lower part and half of car 2 (columns 9, 10)
    crop = panoptic_targets(semantic[rows, cols], panoptic[rows, cols], IS_THING, config)
    person = panoptic[rows, cols].numpy() == PERSON * LABEL_DIVISOR + 1
    torch.testing.assert_close(crop["offset"][:, person], full["offset"][:, rows, cols][:, person])
    car2 = panoptic[rows, cols].numpy() == CAR * LABEL_DIVISOR + 2   # visible: rows 6-7, columns 9-10
    ys, xs = np.nonzero(car2)
    np.testing.assert_allclose(crop["offset"][1].numpy()[car2], 9.5 - xs, atol=1e-6)
    np.testing.assert_allclose(crop["offset"][0].numpy()[car2], 4.5 - ys, atol=1e-6)
    car1 = panoptic[rows, cols].numpy() == CAR * LABEL_DIVISOR + 1   # rows 2-3 of the L: (2,2) (2,3) (3,2..6)
    cy, cx = (2 * 2 + 3 * 5) / 7 - 2, (2 + 3 + 2 + 3 + 4 + 5 + 6) / 7
    ys, xs = np.nonzero(car1)
    np.testing.assert_allclose(crop["offset"][0].numpy()[car1], cy - ys, atol=1e-5)
    np.testing.assert_allclose(crop["offset"][1].numpy()[car1], cx - xs, atol=1e-5)


def test_padding_is_void_whatever_its_id() -> None:
    """The transforms pad the panoptic map with the mask's fill (255 = class 0, instance 255); the ignore label
    in the mask makes it void, so no thing is made of padding."""
    semantic, panoptic = scene()
    semantic = torch.nn.functional.pad(semantic, (0, 4), value=X)
    panoptic = torch.nn.functional.pad(panoptic, (0, 4), value=255)
    t = panoptic_targets(semantic, panoptic, thing_mask(3, [ROAD, CAR, PERSON]), PanopticTargetConfig())
    assert (t["panoptic"][:, 16:] == VOID).all() and (t["offset_weight"][:, 16:] == 0).all()
    assert (t["center_weight"][:, 16:] == 0).all()


def colour_instances(panoptic: np.ndarray) -> np.ndarray:
    """An image whose colour encodes each pixel's panoptic id, to check image / id alignment after augmentation."""
    codes = np.unique(panoptic, return_inverse=True)[1].reshape(panoptic.shape)
    return np.stack([codes * 40 % 256, codes * 90 % 256, codes * 150 % 256], -1).astype(np.uint8)


def recompute_centres(panoptic: np.ndarray) -> dict:
    """Centres of mass per thing instance of an (augmented) map, independently of the code under test."""
    centres = {}
    for value in np.unique(panoptic):
        if value // LABEL_DIVISOR in (CAR, PERSON) and value % LABEL_DIVISOR > 0:
            ys, xs = np.nonzero(panoptic == value)
            centres[value] = (ys.mean(), xs.mean())
    return centres


@pytest.mark.parametrize("seed", range(6))
def test_training_transform_keeps_ids_aligned_and_targets_consistent(seed: int) -> None:
    """Scale, pad, crop and flip move the panoptic ids exactly with the image and the mask, and the targets
    computed afterwards point every thing pixel at its instance's centre in the augmented map."""
    semantic, panoptic = scene()
    big = np.kron(panoptic.numpy(), np.ones((4, 4), np.int64))  # 48 x 64, so scaling keeps every instance
    mask = np.where(big == VOID, X, big // LABEL_DIVISOR).astype(np.uint8)
    image = colour_instances(big)
    torch.manual_seed(seed)
    transform = SegmentationTransform(TransformConfig(crop_size=(40, 40), scale_range=(0.75, 1.5), hflip=True,
                                                      mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)), train=True)
    out_image, out_mask, out_panoptic = transform(image, mask, big)
    assert out_panoptic.dtype == torch.int64 and out_panoptic.shape == out_mask.shape == (40, 40)
    labelled = out_mask.numpy() != X
    np.testing.assert_array_equal(out_mask.numpy()[labelled], out_panoptic.numpy()[labelled] // LABEL_DIVISOR)
    # away from edges (where bilinear resampling blends colours) every pixel has the colour of its input id
    ids = np.pad(out_panoptic.numpy(), 1, constant_values=-1)  # the crop border may blend with cropped-away pixels
    interior = labelled & np.all([ids[1 + dy:41 + dy, 1 + dx:41 + dx] == ids[1:41, 1:41]
                                  for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
    colour_of = {v: image[big == v][0] for v in np.unique(big)}
    rgb = np.round(out_image.numpy().transpose(1, 2, 0) * 255).astype(np.int64)
    expected = np.array([colour_of[v] for v in out_panoptic.numpy()[interior]])
    assert interior.sum() > 0.4 * labelled.sum()
    np.testing.assert_allclose(rgb[interior], expected, atol=6)  # ids' colours are at least 40 apart

    t = panoptic_targets(out_mask, out_panoptic, IS_THING, PanopticTargetConfig(sigma=3.0))
    ys, xs = np.mgrid[0:40, 0:40]
    for value, (cy, cx) in recompute_centres(t["panoptic"].numpy()).items():
        pixels = t["panoptic"].numpy() == value
        np.testing.assert_allclose(ys[pixels] + t["offset"][0].numpy()[pixels], cy, atol=1e-4)
        np.testing.assert_allclose(xs[pixels] + t["offset"][1].numpy()[pixels], cx, atol=1e-4)
        assert t["center"][0, round(cy), round(cx)] == 1.0
