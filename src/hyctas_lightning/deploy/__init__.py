"""Deployment: the optimised inference path in one call (``optimize``), and exporting trained networks (BatchNorm
folded) to ONNX, TorchScript and torch.export."""
from .export import FORMATS, ExportResult, export_network
from .optimize import Selection, Trial, optimize

__all__ = ["ExportResult", "FORMATS", "Selection", "Trial", "export_network", "optimize"]
