"""Searchable operators. Importing this package registers the built-in ones."""
from . import attention, convolution  # noqa: F401  (registration side effects)
from .registry import OPS, build_op, register_op

__all__ = ["OPS", "build_op", "register_op"]
