"""Panoptic quality (PQ = SQ x RQ) by the COCO panoptic rules, accumulated over a split on the GPU.

The rules (Kirillov et al. 2019, and the COCO / Cityscapes evaluation scripts): a predicted and a ground-truth
segment of the same class match when their IoU exceeds 0.5, where the union leaves out the predicted segment's
pixels on void; unmatched ground-truth segments are false negatives, except crowd regions, which are never
matched and never counted; an unmatched predicted segment is a false positive unless more than half of it lies
on void or on a crowd region of its own class. Per class PQ = sum of matched IoUs / (TP + FP/2 + FN/2); the
averages over all / thing / stuff classes skip classes with no segment at all.

torchmetrics' ``PanopticQuality`` (1.9) departs from these rules in three ways, which is why this metric exists:
it knows no crowd regions (a crowd is either an ordinary segment, counted as a false negative, or void, which also
hides overlapping predictions of other classes and changes the union); it removes ground-truth pixels that the
*prediction* leaves void from the union; and it drops unmatched ground-truth segments that the prediction leaves
mostly void instead of counting them as false negatives. On inputs with no crowd and no void in the prediction
the two agree (tested); this metric also keeps several segments of one stuff class apart, as COCO does.

Maps use the encoding of ``hyctas_lightning.data.labels``: ``class * label_divisor + instance``; a thing class
with instance 0 in the ground truth is a crowd region; ids whose class is not in ``0..num_classes-1`` are void.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from torchmetrics import Metric

from hyctas_lightning.data.labels import LABEL_DIVISOR
from hyctas_lightning.data.panoptic import thing_mask

GROUPS = ("All", "Things", "Stuff")


@dataclass
class PanopticScores:
    """Per-class counts and scores (numpy, float64) and the All / Things / Stuff averages ``{pq, sq, rq, n}``.

    Args:
        iou: per class, the summed IoU of matched segment pairs.
        tp: per class, matched pairs (IoU above 0.5).
        fp: per class, predicted segments left unmatched.
        fn: per class, ground-truth segments left unmatched.
        thing: per class, whether it is a thing class (boolean).
    """

    iou: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    thing: np.ndarray

    @property
    def present(self) -> np.ndarray:
        """Classes with at least one segment (matched or not): the ones averaged."""
        return self.tp + self.fp + self.fn > 0

    @property
    def pq(self) -> np.ndarray:
        return np.divide(self.iou, self.tp + 0.5 * self.fp + 0.5 * self.fn, out=np.zeros_like(self.iou),
                         where=self.present)

    @property
    def sq(self) -> np.ndarray:
        return np.divide(self.iou, self.tp, out=np.zeros_like(self.iou), where=self.tp > 0)

    @property
    def rq(self) -> np.ndarray:
        return np.divide(self.tp.astype(np.float64), self.tp + 0.5 * self.fp + 0.5 * self.fn,
                         out=np.zeros_like(self.iou), where=self.present)

    def summary(self, group: str = "All") -> Dict[str, float]:
        """``{pq, sq, rq, n}`` averaged over the present classes of ``group`` (All, Things or Stuff); 0 if none."""
        members = {"All": np.ones_like(self.thing), "Things": self.thing, "Stuff": ~self.thing}[group] & self.present
        n = int(members.sum())
        mean = (lambda v: float(v[members].sum() / n)) if n else (lambda v: 0.0)
        return {"pq": mean(self.pq), "sq": mean(self.sq), "rq": mean(self.rq), "n": n}

    def to_dict(self, category_ids: Optional[Sequence[Any]] = None) -> Dict[str, Any]:
        """``{"All", "Things", "Stuff": {pq, sq, rq, n}, "per_class": {id: {pq, sq, rq, tp, fp, fn}}}``, values of
        pq/sq/rq in [0, 1]; ``category_ids`` name the classes (default: their indices); absent classes score 0."""
        ids = list(category_ids) if category_ids is not None else list(range(len(self.tp)))
        per_class = {ids[k]: {"pq": float(self.pq[k]), "sq": float(self.sq[k]), "rq": float(self.rq[k]),
                              "tp": int(self.tp[k]), "fp": int(self.fp[k]), "fn": int(self.fn[k])}
                     for k in range(len(ids))}
        return {**{group: self.summary(group) for group in GROUPS}, "per_class": per_class}


def format_pq_table(scores: PanopticScores, names: Optional[Sequence[str]] = None) -> str:
    """Per-class PQ, SQ, RQ in percent with the class kind, then the All / Things / Stuff rows with their class
    counts; classes with no segment are shown as '-'."""
    names = list(names) if names else [f"class {k}" for k in range(len(scores.tp))]
    if len(names) != len(scores.tp):
        raise ValueError(f"{len(names)} class names for {len(scores.tp)} classes")
    width = max(len(n) for n in names + ["Things"])
    header = f"{'class':<{width}}  {'kind':<5}  {'PQ':>6}  {'SQ':>6}  {'RQ':>6}"
    rows = [header, "-" * len(header)]
    for k, name in enumerate(names):
        kind = "thing" if scores.thing[k] else "stuff"
        cells = ("-", "-", "-") if not scores.present[k] else tuple(
            f"{100 * v:.2f}" for v in (scores.pq[k], scores.sq[k], scores.rq[k]))
        rows.append(f"{name:<{width}}  {kind:<5}  {cells[0]:>6}  {cells[1]:>6}  {cells[2]:>6}")
    rows += ["-" * len(header), f"{'':<{width}}  {'N':>5}  {'PQ':>6}  {'SQ':>6}  {'RQ':>6}"]
    for group in GROUPS:
        s = scores.summary(group)
        values = "  ".join(f"{100 * s[key]:>6.2f}" for key in ("pq", "sq", "rq"))
        rows.append(f"{group:<{width}}  {s['n']:>5}  {values}")
    return "\n".join(rows)


class PanopticQuality(Metric):
    """PQ, SQ and RQ per class and for all / things / stuff, by the COCO rules (see the module doc).

    ``update(preds, target)`` takes panoptic maps ``(B, ...)`` of equal shape; images of a batch are scored
    separately (segments never match across images). ``compute()`` returns ``PanopticScores``. The counts are
    summed across processes.

    Args:
        num_classes: number of classes; ids of any other class are void.
        thing_ids: class indices of the thing classes.
        label_divisor: the panoptic id encoding's divisor.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int, thing_ids: Sequence[int], label_divisor: int = LABEL_DIVISOR,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.thing_ids = tuple(int(k) for k in thing_ids)
        self.label_divisor = label_divisor
        for name, dtype in (("iou", torch.float64), ("tp", torch.long), ("fp", torch.long), ("fn", torch.long)):
            self.add_state(name, torch.zeros(num_classes, dtype=dtype), dist_reduce_fx="sum")

    def _segments(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every segment of a batch once: keys (image, id) or -1 for void, each pixel's segment, segment areas."""
        div = self.label_divisor
        image = torch.arange(len(maps), device=maps.device)[:, None]
        void = (maps < 0) | (maps // div >= self.num_classes)
        keys = torch.where(void, -1, image * (self.num_classes * div) + maps)
        return torch.unique(keys, return_inverse=True, return_counts=True)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.shape != target.shape:
            raise ValueError(f"preds and target must have one shape, got {tuple(preds.shape)} and "
                             f"{tuple(target.shape)}")
        div, span = self.label_divisor, self.num_classes * self.label_divisor
        is_thing = thing_mask(self.num_classes, self.thing_ids, preds.device)
        g_keys, g_pixel, g_area = self._segments(target.flatten(1).long())
        p_keys, p_pixel, p_area = self._segments(preds.flatten(1).long())
        pairs, inter = torch.unique(g_pixel * len(p_keys) + p_pixel, return_counts=True)
        g, p = pairs // len(p_keys), pairs % len(p_keys)

        g_void, p_void = g_keys < 0, p_keys < 0
        g_class = torch.where(g_void, self.num_classes, g_keys % span // div)
        p_class = torch.where(p_void, self.num_classes, p_keys % span // div)
        g_crowd = is_thing[g_class] & (g_keys % div == 0) & ~g_void
        same_class = g_class[g] == p_class[p]

        def per_pred(selected: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(p_area).index_add_(0, p[selected], inter[selected])

        on_void = per_pred(g_void[g])
        on_crowd = per_pred(g_crowd[g] & same_class)
        union = p_area[p] + g_area[g] - inter - on_void[p]
        match = same_class & ~g_void[g] & ~g_crowd[g] & ~p_void[p] & (2 * inter > union)
        matched_class = g_class[g[match]]
        self.iou.index_add_(0, matched_class, inter[match].double() / union[match].double())
        self.tp.index_add_(0, matched_class, torch.ones_like(matched_class))

        g_matched = torch.zeros_like(g_void).index_fill_(0, g[match], True)
        p_matched = torch.zeros_like(p_void).index_fill_(0, p[match], True)
        missed = g_class[~g_void & ~g_crowd & ~g_matched]
        self.fn.index_add_(0, missed, torch.ones_like(missed))
        ignored = 2 * (on_void + on_crowd) > p_area
        wrong = p_class[~p_void & ~p_matched & ~ignored]
        self.fp.index_add_(0, wrong, torch.ones_like(wrong))

    def compute(self) -> PanopticScores:
        thing = thing_mask(self.num_classes, self.thing_ids)[:-1].numpy()
        return PanopticScores(self.iou.cpu().numpy(), self.tp.cpu().numpy(), self.fp.cpu().numpy(),
                              self.fn.cpu().numpy(), thing)
