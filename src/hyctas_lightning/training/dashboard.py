"""What a training run shows on a W&B dashboard beyond scalars: the per-class IoU table and validation images with
their predicted and true masks. Everything here is a no-op without a ``WandbLogger``, and ``wandb`` is imported
only when one is in use."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch

from hyctas_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD

from .prediction import denormalise


def wandb_run(loggers: Any) -> Optional[Any]:
    """The W&B run of the first ``WandbLogger`` among ``loggers`` (one logger, a list of them, or None)."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers if isinstance(loggers, (list, tuple)) else [loggers]:
        if isinstance(logger, WandbLogger):
            return logger.experiment
    return None


def iou_table(ious: torch.Tensor, classes: Sequence[str]) -> Any:
    """Per-class IoU as a ``wandb.Table`` (class, IoU); classes absent from labels and predictions have no value."""
    import wandb

    values = [None if v != v else float(v) for v in ious.tolist()]
    return wandb.Table(columns=["class", "IoU"], data=[[name, v] for name, v in zip(classes, values)])


def mask_images(images: torch.Tensor, predictions: torch.Tensor, targets: torch.Tensor, classes: Sequence[str],
                ignore_index: int = 255, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD, captions: Optional[Sequence[str]] = None) -> List[Any]:
    """``wandb.Image`` of each (normalised) image with its predicted and true label maps as toggleable masks.

    Args:
        images: ``(N, 3, H, W)`` normalised images.
        predictions: ``(N, H, W)`` predicted class ids.
        targets: ``(N, H, W)`` true class ids (``ignore_index`` where unlabelled).
        classes: class names, in id order.
        ignore_index: label of unlabelled pixels, shown as its own mask class ``ignore``.
        mean: normalisation mean of the images.
        std: normalisation standard deviation of the images.
        captions: one caption per image (e.g. its file name).
    """
    import wandb

    labels: Dict[int, str] = dict(enumerate(classes))
    labels[ignore_index] = "ignore"
    out = []
    for k, (image, pred, truth) in enumerate(zip(images, predictions, targets)):
        masks = {"prediction": {"mask_data": pred.cpu().numpy().astype("int32"), "class_labels": labels},
                 "ground_truth": {"mask_data": truth.cpu().numpy().astype("int32"), "class_labels": labels}}
        out.append(wandb.Image(denormalise(image.float(), mean, std), masks=masks,
                               caption=captions[k] if captions else None))
    return out


class ValidationMedia:
    """Keeps the first validation batch's first ``count`` images with their predictions, then logs them with the
    epoch's per-class IoU table to the module's W&B run (if it has one).

    Args:
        count: images to log per validation.
    """

    def __init__(self, count: int = 4) -> None:
        self.count = count
        self.samples: Optional[Dict[str, Any]] = None

    def remember(self, module: Any, batch: dict, logits: torch.Tensor, batch_idx: int) -> None:
        if batch_idx != 0 or self.count <= 0 or module.trainer.sanity_checking or wandb_run(module.loggers) is None:
            return
        k = self.count
        self.samples = {"images": batch["image"][:k].detach().cpu(), "targets": batch["mask"][:k].detach().cpu(),
                        "predictions": logits[:k].argmax(1).detach().cpu(),
                        "names": [str(n) for n in batch.get("name", [])][:k]}

    def log(self, module: Any, ious: torch.Tensor, classes: Sequence[str], prefix: str = "val") -> None:
        """Log ``{prefix}/IoU_table`` and, when images were kept, ``{prefix}/predictions``."""
        run = wandb_run(module.loggers)
        if run is None or module.trainer.sanity_checking:
            return
        media = {f"{prefix}/IoU_table": iou_table(ious.cpu(), classes), "trainer/global_step": module.global_step}
        if self.samples is not None:
            transforms = getattr(module.trainer.datamodule, "transforms", None)
            s = self.samples
            media[f"{prefix}/predictions"] = mask_images(
                s["images"], s["predictions"], s["targets"], classes, module.hparams.ignore_index,
                getattr(transforms, "mean", IMAGENET_MEAN), getattr(transforms, "std", IMAGENET_STD),
                s["names"] or None)
            self.samples = None
        run.log(media)
