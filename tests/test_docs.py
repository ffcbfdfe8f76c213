"""Docstrings are the command line's help: jsonargparse turns each class's Google-style ``Args:`` section into the
``--help`` text of its arguments, so every public class with constructor arguments must document each of them by
its current name."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

from hyctas_lightning.cli import main

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "hyctas_lightning"

# Files whose docstrings are not checked yet; remove an entry once its classes and functions have ``Args:`` sections.
EXCLUDED: set = set()  # package files the checks skip (relative to the package), each with its reason
EXCLUDED_DIRS: tuple = ()

ENTRY = re.compile(r"^(\*{0,2}\w+)\s*(\([^)]*\))?:")


def _files() -> List[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py"))
            if (rel := p.relative_to(PACKAGE).as_posix()) not in EXCLUDED and not rel.startswith(EXCLUDED_DIRS)]


def documented_args(docstring: Optional[str]) -> Optional[Set[str]]:
    """Names of the entries of a Google-style ``Args:`` section (``**kwargs`` as ``kwargs``); None if there is none."""
    lines = (docstring or "").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Args:"]
    if not starts:
        return None
    names: Set[str] = set()
    entry_indent = None
    for line in lines[starts[0] + 1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0 or (entry_indent is not None and indent < entry_indent):
            break  # the section ended (a new paragraph or section)
        entry_indent = entry_indent if entry_indent is not None else indent
        match = ENTRY.match(line.strip())
        if indent == entry_indent and match:
            names.add(match.group(1).lstrip("*"))
    return names


def _is_dataclass(node: ast.ClassDef) -> bool:
    return any("dataclass" in ast.dump(d) for d in node.decorator_list)


def _field_is_init(node: ast.AnnAssign) -> bool:
    if "ClassVar" in ast.dump(node.annotation):
        return False
    value = node.value
    return not (isinstance(value, ast.Call) and any(k.arg == "init" and isinstance(k.value, ast.Constant)
                                                    and k.value.value is False for k in value.keywords))


def constructor_args(node: ast.ClassDef) -> Dict[str, bool]:
    """``{name: required}``: the parameters of the class's own ``__init__`` or its dataclass fields; variadic ones
    (``*args``, ``**options``) may be documented but need not be."""
    init = [n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    if init:
        return function_args(init[0], skip_first=True)
    if _is_dataclass(node):
        return {n.target.id: True for n in node.body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and _field_is_init(n)}
    return {}


def function_args(node: ast.FunctionDef, skip_first: bool = False) -> Dict[str, bool]:
    a = node.args
    named = [x.arg for x in a.posonlyargs + a.args][int(skip_first):] + [x.arg for x in a.kwonlyargs]
    variadic = [x.arg for x in (a.vararg, a.kwarg) if x is not None]
    return {**dict.fromkeys(named, True), **dict.fromkeys(variadic, False)}


def mismatch(where: str, args: Dict[str, bool], documented: Optional[Set[str]]) -> List[str]:
    if documented is None:
        return [f"{where}: no Args: section (arguments: {', '.join(args)})"]
    missing = [n for n, required in args.items() if required and n not in documented]
    unknown = sorted(documented - set(args))
    return ([f"{where}: Args: lacks {missing}"] if missing else []) + \
        ([f"{where}: Args: names {unknown}, which are not arguments (renamed?)"] if unknown else [])


def test_public_classes_document_every_constructor_argument() -> None:
    problems = []
    for path in _files():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                args = constructor_args(node)
                if args:
                    where = f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"
                    problems += mismatch(where, args, documented_args(ast.get_docstring(node)))
    assert not problems, "\n".join(problems)


def test_args_sections_of_functions_name_their_parameters() -> None:
    """A function's ``Args:`` section, where it has one, names each parameter by its current name."""
    problems = []
    for path in _files():
        tree = ast.parse(path.read_text())
        methods = [m for c in tree.body if isinstance(c, ast.ClassDef) for m in c.body]
        for node in tree.body + methods:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                documented = documented_args(ast.get_docstring(node))
                args = function_args(node, skip_first=node in methods and not _is_static(node))
                if documented is not None and args:
                    problems += mismatch(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}", args, documented)
    assert not problems, "\n".join(problems)


def _is_static(node: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)


def test_documented_args_reads_google_sections() -> None:
    doc = """Summary.

    Args:
        alpha: first,
            continued: not an entry.
        beta (int): second.
        **options: the rest.

    Returns:
        gamma: not an argument.
    """
    assert documented_args(doc) == {"alpha", "beta", "options"}
    assert documented_args("No section.") is None


def test_fit_help_shows_the_model_argument_docs(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``--model.help CLASS`` prints the init arguments of a subclass-typed model with their docstring text (plain
    ``--help`` lists only ``--model``)."""
    config = str(ROOT / "configs" / "demo" / "retrain.yaml")
    monkeypatch.setattr(sys, "argv", ["hyctas"])  # LightningCLI warns when pytest's own arguments are there too
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", config, "--model.help", "SegmentationModule"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # help wraps lines; compare with single spaces
    for option, description in [("--model.lr", "peak learning rate of SGD"),
                                 ("--model.aux_weight", "weight of the auxiliary FCN heads"),
                                 ("--model.drop_path_rate", "final probability of scheduled drop path"),
                                 ("--model.test_flip", "also average the horizontally flipped pass")]:
        assert option in text
        assert description in text, f"{option}: its docstring text is missing from --help"
