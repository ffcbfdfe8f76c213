"""Measuring networks: parameters, multiply-adds, mIoU, latency; the inference path and BatchNorm folding."""
from .folding import count_batchnorms, fold_batchnorm
from .inference import segment
from .metrics import format_iou_table, mean_iou, per_class_iou
from .profile import Profile, count_macs, count_params, profile_architecture, profile_model

__all__ = ["Profile", "count_batchnorms", "count_macs", "count_params", "fold_batchnorm", "format_iou_table",
           "mean_iou", "per_class_iou", "profile_architecture", "profile_model", "segment"]
