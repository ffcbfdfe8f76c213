"""Visualisation: readable views of architectures for logs, reports and papers."""
from .architecture import draw_architecture, format_architecture, op_colour

__all__ = ["draw_architecture", "format_architecture", "op_colour"]
