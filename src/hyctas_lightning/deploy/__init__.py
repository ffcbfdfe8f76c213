"""Deployment: exporting trained networks (BatchNorm folded) to ONNX, TorchScript and torch.export."""
from .export import FORMATS, ExportResult, export_network

__all__ = ["ExportResult", "FORMATS", "export_network"]
