"""The ``hyctas`` command: Lightning's ``fit/validate/test/predict`` (a LightningCLI with YAML configs) and the
tools that need no Trainer. Each tool is a module of this package with ``add_arguments(parser)`` and
``run(args) -> int``; its docstring is its ``--help`` description. Tools are imported on use, so ``hyctas
profile`` starts without loading Lightning."""
from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import List, Optional, Sequence

from .parsing import HyctasArgumentParser

TOOLS = {
    "profile": "parameters and multiply-adds of architectures",
    "show": "an architecture as a table and a figure",
    "data": "'hyctas data check': scan a dataset for problems",
    "search": "NSGA-II search of a trained supernet",
    "rank": "does a supernet rank? its estimates against sub-networks trained alone (Kendall tau)",
    "bench": "batch-1 latency, plain and optimised, against peers",
    "export": "ONNX / TorchScript / torch.export with BatchNorm folded",
    "pipeline": "the whole method as one resumable run: supernet, search, rank study, retraining, report",
    "panoptic-eval": "PQ of COCO-format panoptic predictions against COCO-format ground truth",
}
DEBUG_FLAG = "--debug"


def tools_help() -> str:
    return "tools: " + "; ".join(f"'hyctas {name}' ({what})" for name, what in TOOLS.items())


def tool_parser(name: str) -> tuple[HyctasArgumentParser, object]:
    """The parser of tool ``name`` and its module."""
    module = importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
    prog = getattr(module, "PROG", f"hyctas {name}")
    parser = HyctasArgumentParser(prog=prog, description=module.__doc__, default_config_files=[])
    module.add_arguments(parser)
    return parser, module


def run_tool(name: str, argv: Sequence[str]) -> int:
    parser, module = tool_parser(name)
    argv = list(getattr(module, "prepare_argv", list)(argv))
    return int(module.run(parser.instantiate_classes(parser.parse_args(argv))) or 0)


class _StderrHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a message comes, not the stream it was made with: a
    caller that redirects stderr between two ``main`` calls (a test, a notebook) gets the messages of both."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging() -> None:
    """The package's progress messages (``logging.INFO``) on stderr, as plain lines."""
    logger = logging.getLogger("hyctas_lightning")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def debug_requested(args: List[str]) -> bool:
    """``--debug`` anywhere on the command line (removed from ``args``) or ``HYCTAS_DEBUG`` set (not 0)."""
    flag = DEBUG_FLAG in args
    while DEBUG_FLAG in args:
        args.remove(DEBUG_FLAG)
    return flag or os.environ.get("HYCTAS_DEBUG", "0") not in ("", "0")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one ``hyctas`` command; errors a user can act on print one line and exit with their status
    (``cli.errors.EXIT_CODES``), ``--debug`` adds the traceback."""
    from hyctas_lightning.processes import follow_parent

    from .errors import report

    follow_parent()  # started by a pipeline: end with it
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(args)
    if argv is None:
        sys.argv[1:] = args  # LightningCLI reads sys.argv
    configure_logging()
    command = args[0] if args else None
    prog = f"hyctas {command}" if command != "data" else "hyctas data check"
    try:
        if command in TOOLS:
            return run_tool(command, args[1:])
        from .lightning import run_lightning

        return run_lightning(None if argv is None else args)
    except Exception as e:  # noqa: BLE001 - classified in report(); an unexpected error is re-raised
        return report(e, prog, debug)
