"""Datasets: the registry of LightningDataModules, the shared base, the standard benchmarks read from users' own
copies (Cityscapes, ADE20K, CamVid, COCO panoptic), any folder of images and masks, the embedded procedural street
scenes, and ``data check``."""
from .ade20k import ADE20K_CLASSES, ADE20K_PALETTE, ADE20KDataModule, ADE20KDataset
from .base import FileDataModule, PairedFilesDataset, Sample, SegmentationDataModule, SegmentationDataset
from .camvid import CAMVID_CLASSES, CAMVID_PALETTE, CamVidDataModule, CamVidDataset
from .check import DataReport, SplitReport, check_data
from .cityscapes import (
                         CITYSCAPES_CLASSES,
                         CITYSCAPES_LABELS,
                         CITYSCAPES_PALETTE,
                         CityscapesDataModule,
                         CityscapesDataset,
)
from .coco import CocoPanopticDataModule, CocoPanopticDataset, rgb_to_id
from .files import DatasetError, MissingSplitError
from .folder import FolderDataModule, FolderDataset, FolderLayout
from .labels import IGNORE_INDEX, ColourMap, LabelMap
from .registry import DATASETS, build_datamodule, class_path, datamodule_spec, register_datamodule
from .synthetic import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, SyntheticStreetDataModule, SyntheticStreets, render_scene
from .transforms import SegmentationTransform, TransformConfig

__all__ = ["ADE20K_CLASSES", "ADE20K_PALETTE", "ADE20KDataModule", "ADE20KDataset", "CAMVID_CLASSES", "CAMVID_PALETTE",
           "CITYSCAPES_CLASSES", "CITYSCAPES_LABELS", "CITYSCAPES_PALETTE", "CamVidDataModule", "CamVidDataset",
           "CityscapesDataModule", "CityscapesDataset", "CocoPanopticDataModule", "CocoPanopticDataset", "ColourMap",
           "DATASETS", "DataReport", "DatasetError", "FileDataModule", "FolderDataModule", "FolderDataset",
           "FolderLayout", "IGNORE_INDEX", "LabelMap", "MissingSplitError",
           "PairedFilesDataset", "SYNTHETIC_CLASSES", "SYNTHETIC_PALETTE", "Sample", "SegmentationDataModule",
           "SegmentationDataset", "SegmentationTransform", "SplitReport", "SyntheticStreetDataModule",
           "SyntheticStreets", "TransformConfig", "build_datamodule", "check_data", "class_path", "datamodule_spec",
           "register_datamodule", "render_scene", "rgb_to_id"]
