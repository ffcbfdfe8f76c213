"""Post-processing: centres by threshold, max-pool NMS and top-k; grouping by offset; majority-vote merge with the
stuff area threshold; batched. Post-processing the ground-truth targets reproduces the ground truth."""
from __future__ import annotations

import numpy as np
import torch

from hyctas_lightning.data import SyntheticStreetDataModule, TransformConfig
from hyctas_lightning.data.labels import LABEL_DIVISOR, VOID
from hyctas_lightning.data.panoptic import PanopticTargetConfig, thing_mask
from hyctas_lightning.evaluation.panoptic_inference import (
    PanopticPostProcess,
    connected_component_panoptic,
    find_centres,
)
from hyctas_lightning.evaluation.panoptic_quality import PanopticQuality

ROAD, CAR, PERSON = 0, 1, 2
POST = PanopticPostProcess(thing_ids=(CAR, PERSON), num_classes=3, nms_kernel=3, stuff_area=4)


def heatmap(height: int, width: int, peaks: dict) -> torch.Tensor:
    heat = torch.zeros(1, 1, height, width)
    for (y, x), value in peaks.items():
        heat[0, 0, y, x] = value
    return heat


def offsets_to(centres: np.ndarray) -> torch.Tensor:
    """Offsets (1, 2, H, W) pointing every pixel at ``centres[y, x]`` (a (H, W, 2) array of targets)."""
    ys, xs = np.mgrid[0:centres.shape[0], 0:centres.shape[1]]
    return torch.from_numpy(np.stack([centres[..., 0] - ys, centres[..., 1] - xs])[None]).float()


def test_touching_instances_of_one_class_are_separated_by_their_offsets() -> None:
    semantic = torch.zeros(1, 4, 8, dtype=torch.long)
    semantic[0, 1:3, 1:7] = CAR                       # one connected car region ...
    targets = np.zeros((4, 8, 2))
    targets[:, :4] = (1.5, 2.0)                       # ... whose left half points at (1.5, 2) ...
    targets[:, 4:] = (1.5, 5.0)                       # ... and right half at (1.5, 5)
    panoptic = POST(semantic, heatmap(4, 8, {(1, 2): 0.9, (2, 5): 0.8}), offsets_to(targets))
    left, right = panoptic[0, 1, 1].item(), panoptic[0, 1, 6].item()
    assert left // LABEL_DIVISOR == right // LABEL_DIVISOR == CAR and left != right
    assert (panoptic[0, 1:3, 1:4] == left).all() and (panoptic[0, 1:3, 4:7] == right).all()
    assert (panoptic[0, 0] == ROAD * LABEL_DIVISOR).all()  # stuff: class, instance 0


def test_instances_take_the_majority_class_and_small_stuff_is_void() -> None:
    semantic = torch.tensor([[[0, 0, 0, 1, 1, 2, 0, 0],
                              [0, 0, 0, 1, 1, 1, 0, 0]]])
    panoptic = POST(semantic, heatmap(2, 8, {(0, 4): 0.5}), torch.zeros(1, 2, 2, 8))
    car = CAR * LABEL_DIVISOR + 1
    assert (panoptic[0, :, 3:6] == car).all()          # the person pixel joins the car: 5 car pixels to 1
    assert (panoptic[0, :, :3] == ROAD * LABEL_DIVISOR).all()
    few_road = torch.tensor([[[0, 0, 1, 1, 1, 1, 1, 1]]])
    panoptic = POST(few_road, heatmap(1, 8, {(0, 4): 0.5}), torch.zeros(1, 2, 1, 8))
    assert (panoptic[0, 0, :2] == VOID).all()          # 2 road pixels < stuff_area 4


def test_threshold_nms_and_top_k() -> None:
    heat = heatmap(5, 9, {(1, 1): 0.9, (1, 2): 0.5, (3, 7): 0.3, (3, 4): 0.08})
    centres, valid = find_centres(heat, threshold=0.1, nms_kernel=3, top_k=200)
    assert centres[valid].tolist() == [[1, 1], [3, 7]]  # (1, 2) lies in (1, 1)'s window; (3, 4) is under 0.1
    centres, valid = find_centres(heat, threshold=0.1, nms_kernel=1, top_k=200)
    assert centres[valid].tolist() == [[1, 1], [1, 2], [3, 7]]
    centres, valid = find_centres(heat, threshold=0.1, nms_kernel=1, top_k=2)
    assert centres[valid].tolist() == [[1, 1], [1, 2]]


def test_no_centre_leaves_things_void_and_batches_equal_single_images() -> None:
    semantic = torch.tensor([[[0, 1, 1, 0]], [[2, 2, 0, 0]]])
    heat = torch.cat([heatmap(1, 4, {}), heatmap(1, 4, {(0, 1): 0.7})])
    offset = torch.randn(2, 2, 1, 4) * 0.2
    batch = POST(semantic, heat, offset)
    assert (batch[0, 0, 1:3] == VOID).all() and (batch[1, 0, :2] == PERSON * LABEL_DIVISOR + 1).all()
    for k in range(2):
        torch.testing.assert_close(POST(semantic[k:k + 1], heat[k:k + 1], offset[k:k + 1]), batch[k:k + 1])


def test_connected_component_baseline_merges_touching_instances() -> None:
    semantic = torch.tensor([[[1, 1, 1, 0, 1, 2],
                              [1, 1, 1, 0, 0, 2]]])
    panoptic = connected_component_panoptic(semantic, thing_mask(3, [CAR, PERSON]), stuff_area=0)[0]
    assert len(torch.unique(panoptic[:, :3])) == 1 and panoptic[0, 4] != panoptic[0, 0]
    assert set((torch.unique(panoptic) // LABEL_DIVISOR).tolist()) == {ROAD, CAR, PERSON}


def test_post_processing_the_ground_truth_targets_reproduces_the_ground_truth() -> None:
    """Semantic mask + centre heatmap + offsets of augmented street scenes, post-processed with the default
    settings (threshold 0.1, NMS 7, top-k 200), give back the panoptic ground truth: PQ > 0.99."""
    data = SyntheticStreetDataModule(train_samples=24, size=(96, 192), batch_size=8, panoptic=PanopticTargetConfig(),
                                     transforms=TransformConfig(crop_size=(80, 160), scale_range=(0.75, 1.5)))
    post = PanopticPostProcess(data.thing_ids, data.num_classes, stuff_area=0)
    metric = PanopticQuality(data.num_classes, data.thing_ids)
    torch.manual_seed(0)
    instances = 0
    for batch in data.train_dataloader():
        metric.update(post(batch["mask"], batch["center"], batch["offset"]), batch["panoptic"])
        instances += int((batch["center"] == 1.0).sum())
    scores = metric.compute()
    assert instances > 60
    assert scores.summary("All")["pq"] > 0.99 and scores.summary("Things")["pq"] > 0.99, scores.to_dict()
