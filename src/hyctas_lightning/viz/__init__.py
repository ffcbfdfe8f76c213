"""Visualisation: readable views of architectures and results for logs, notebooks, reports and papers."""
from .architecture import draw_architecture, format_architecture, op_colour
from .tables import Table

__all__ = ["Table", "draw_architecture", "format_architecture", "op_colour"]
