"""``hyctas predict`` output: colourised label maps and overlays on the input images, written as PNGs; for panoptic
models COCO-format panoptic PNGs + JSON and overlays."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image

from hyctas_lightning.data.labels import LABEL_DIVISOR
from hyctas_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD, to_input_size
from hyctas_lightning.evaluation.panoptic_files import to_coco_panoptic
from hyctas_lightning.fileio import write_json

Colour = Tuple[int, int, int]


def default_palette(num_classes: int) -> List[Colour]:
    """The PASCAL VOC colour map (bits of the class id spread over RGB): distinct colours for any class count,
    for data that brings no palette."""
    palette = []
    for k in range(num_classes):
        rgb, c = [0, 0, 0], k
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << shift
            c >>= 3
        palette.append((rgb[0], rgb[1], rgb[2]))
    return palette


def colourise(labels: np.ndarray, palette: Sequence[Colour]) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 RGB."""
    table = np.asarray(palette, dtype=np.uint8)
    if labels.max(initial=0) >= len(table):
        raise ValueError(f"label {labels.max()} has no colour: the palette has {len(table)} entries")
    return table[labels]


def overlay(rgb: np.ndarray, labels: np.ndarray, palette: Sequence[Colour], alpha: float = 0.5,
            ignore_index: Optional[int] = 255) -> np.ndarray:
    """The colourised ``labels`` blended over an ``(H, W, 3)`` uint8 image of the same size with weight ``alpha``;
    pixels labelled ``ignore_index`` (unlabelled ground truth) show the image alone."""
    if rgb.shape[:2] != labels.shape:
        raise ValueError(f"image {rgb.shape[:2]} and labels {labels.shape} differ in size")
    void = labels == ignore_index if ignore_index is not None else np.zeros(labels.shape, bool)
    blend = alpha * colourise(np.where(void, 0, labels), palette) + (1 - alpha) * rgb
    return np.where(void[..., None], rgb, blend.round()).astype(np.uint8)


def denormalise(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised (3, H, W) image back to (H, W, 3) uint8 RGB."""
    mean_t = torch.tensor(mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=image.dtype, device=image.device).view(3, 1, 1)
    rgb = (image * std_t + mean_t).clamp(0, 1).mul(255).round().to(torch.uint8)
    return rgb.permute(1, 2, 0).cpu().numpy()


class OverlayWriter(BasePredictionWriter):
    """What the prediction writers share: the output folder (resolved when prediction starts, so it follows the
    trainer's ``default_root_dir``), and overlays of colours on the input image at the prediction's own size.

    Args:
        output_dir: folder of the outputs (None: ``predictions/`` in the trainer's ``default_root_dir``).
        alpha: weight of the colours in the overlays.
    """

    def __init__(self, output_dir: Optional[str] = None, alpha: float = 0.5) -> None:
        super().__init__(write_interval="batch")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.output_dir = output_dir
        self.directory = Path(output_dir or "predictions")
        self.alpha = alpha

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.directory = Path(self.output_dir or Path(trainer.default_root_dir) / "predictions")

    @staticmethod
    def input_rgb(trainer: L.Trainer, image: torch.Tensor, size: Optional[Sequence[int]], height: int,
                  width: int) -> np.ndarray:
        """The input image as (height, width, 3) uint8: back at its own size (no evaluation padding) and
        un-normalised with the data module's transform mean/std."""
        transforms = getattr(trainer.datamodule, "transforms", None)
        if size is not None and transforms is not None:
            image = to_input_size(image, size, transforms)
        mean, std = getattr(transforms, "mean", IMAGENET_MEAN), getattr(transforms, "std", IMAGENET_STD)
        return denormalise(image[:, :height, :width], mean, std)

    def overlay(self, colours: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        """``colours`` blended over ``rgb`` with weight ``alpha``, as uint8."""
        return (self.alpha * colours + (1 - self.alpha) * rgb).round().astype(np.uint8)


class SegmentationWriter(OverlayWriter):
    """Writes ``NAME_mask.png`` (colourised prediction) and ``NAME_overlay.png`` (the prediction blended over the
    input) for every predicted image, at the image's own size (no evaluation padding).

    Colours come from the data module's palette (or the checkpoint's), else the PASCAL VOC colour map; images
    are un-normalised with the data module's transform mean/std.

    Args:
        output_dir: folder of the PNGs (None: ``predictions/`` in the trainer's ``default_root_dir``).
        alpha: weight of the colour mask in the overlay.
    """

    def __init__(self, output_dir: Optional[str] = None, alpha: float = 0.5) -> None:
        super().__init__(output_dir, alpha)
        self.written = 0

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_predict_start(trainer, pl_module)
        self.written = 0

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: torch.Tensor,
                           batch_indices: Optional[Sequence[int]], batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        palette = getattr(pl_module, "palette", None) or default_palette(pl_module.hparams.num_classes)
        sizes = batch.get("image_size") or [None] * len(batch["name"])
        for name, labels, image, size in zip(batch["name"], prediction, batch["image"], sizes):
            mask = colourise(labels.cpu().numpy(), palette)
            overlay = self.overlay(mask, self.input_rgb(trainer, image, size, *labels.shape[-2:]))
            stem = self.directory / str(name)
            stem.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(f"{stem}_mask.png")
            Image.fromarray(overlay).save(f"{stem}_overlay.png")
            self.written += 1

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rank_zero_info(f"predict: wrote masks and overlays of {self.written} images to {self.directory}")


def colourise_panoptic(panoptic: np.ndarray, palette: Sequence[Colour]) -> np.ndarray:
    """(H, W) panoptic ids -> (H, W, 3) uint8: each class in its colour, thing instances told apart by brightness
    and outlined in white, void black."""
    classes, instances = panoptic // LABEL_DIVISOR, panoptic % LABEL_DIVISOR
    table = np.concatenate([np.asarray(palette, np.float32), np.zeros((1, 3), np.float32)])
    rgb = table[np.where((classes >= 0) & (classes < len(palette)), classes, len(palette))]
    shade = np.where(instances > 0, 0.55 + 0.45 * ((instances * 0.618034) % 1.0), 1.0)
    rgb = rgb * shade[..., None]
    edge = np.zeros(panoptic.shape, bool)
    edge[1:] |= panoptic[1:] != panoptic[:-1]
    edge[:, 1:] |= panoptic[:, 1:] != panoptic[:, :-1]
    rgb[edge & (instances > 0)] = 255.0
    return rgb.round().astype(np.uint8)


class PanopticWriter(OverlayWriter):
    """Writes the predictions of a ``PanopticModule`` in COCO panoptic format, ready for ``hyctas panoptic-eval``:
    ``panoptic/NAME.png`` (segment ids as colours) and ``panoptic.json`` (``annotations`` with ``segments_info``,
    and the data's ``categories``), plus ``NAME_overlay.png``, the segments coloured (``colourise_panoptic``) and
    blended over the input, all at each image's own size.

    Args:
        output_dir: folder of the outputs (None: ``predictions/`` in the trainer's ``default_root_dir``).
        alpha: weight of the colours in the overlays.
    """

    def __init__(self, output_dir: Optional[str] = None, alpha: float = 0.5) -> None:
        super().__init__(output_dir, alpha)
        self.annotations: List[Dict[str, Any]] = []

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_predict_start(trainer, pl_module)
        self.annotations = []

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: List[torch.Tensor],
                           batch_indices: Optional[Sequence[int]], batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        categories = trainer.datamodule.panoptic_categories
        palette = [tuple(c["color"]) for c in categories]
        (self.directory / "panoptic").mkdir(parents=True, exist_ok=True)
        for name, image_id, panoptic, image, size in zip(batch["name"], batch["image_id"], prediction,
                                                         batch["image"], batch["image_size"]):
            panoptic = panoptic.numpy()
            png, segments = to_coco_panoptic(panoptic, [c["id"] for c in categories])
            Image.fromarray(png).save(self.directory / "panoptic" / f"{name}.png")
            self.annotations.append({"image_id": image_id, "file_name": f"{name}.png", "segments_info": segments})
            overlay = self.overlay(colourise_panoptic(panoptic, palette),
                                   self.input_rgb(trainer, image, size, *panoptic.shape))
            Image.fromarray(overlay).save(self.directory / f"{name}_overlay.png")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        document = {"annotations": self.annotations, "categories": trainer.datamodule.panoptic_categories}
        write_json(self.directory / "panoptic.json", document, indent=None)
        rank_zero_info(f"predict: wrote COCO panoptic PNGs and JSON of {len(self.annotations)} images and their "
                       f"overlays to {self.directory}")
