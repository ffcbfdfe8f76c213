"""One line for a config value that jsonargparse refuses: the key, the value and the type it should have, or for
a ``class_path`` that does not import, the closest class that does.

jsonargparse explains a refusal as the tree of every alternative it tried (``lr: fast`` in a training config
gives 12 lines of union subtypes after a 45-line usage); the user needs the one leaf that names their value.
``explain`` finds it, and ``OneLineErrors`` raises it as a ``ConfigError`` that ``hyctas`` prints as one line
with exit status 2. Errors without a value behind them (an unknown option, a missing argument) keep argparse's
usage text."""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from jsonargparse import ArgumentParser

KEY = re.compile(r'^Parser key "([^"]+)":\s*(.*)$')
PROBLEM = re.compile(r"^Problem with given class_path '([^']+)':$")
NOT_ACCEPTED = re.compile(r"^Option '([^']+)' is not accepted$")
IMPORT_PATH = re.compile(r"^Expected a dot import path string: (.+)$")
EXPECTED = re.compile(r"^Expected an? (.+?)(?:\. Got value: (.*))?$")
GIVEN = re.compile(r"^Given value: (.*)$")
DOTTED = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\b")


@dataclass
class Node:
    """A line of a jsonargparse error message and the more indented lines under it.

    Args:
        text: the line without its indentation and list bullet.
        children: the lines nested under it.
    """

    text: str
    children: List[Node] = field(default_factory=list)


def message_tree(message: str) -> List[Node]:
    """The lines of ``message`` nested by indentation (a ``- `` bullet counts as indentation)."""
    roots: List[Node] = []
    stack: List[Tuple[int, Node]] = []
    for line in message.splitlines():
        text = line.strip()
        if not text:
            continue
        indent = len(line) - len(line.lstrip())
        node = Node(text[2:] if text.startswith("- ") else text)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        (stack[-1][1].children if stack else roots).append(node)
        stack.append((indent, node))
    return roots


def import_class(path: str) -> Optional[type]:
    """The class at dotted ``path``, or None if it does not import."""
    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name) if module else None
    except (ImportError, AttributeError, ValueError):
        return None
    return found if inspect.isclass(found) else None


def _subclasses(base: type) -> Iterator[type]:
    for cls in base.__subclasses__():
        yield cls
        yield from _subclasses(cls)


def closest_class(name: str, context: str = "") -> Optional[str]:
    """The importable class whose name is closest to ``name``: first the classes of the module ``name`` points
    into, then the imported subclasses of the types named in ``context`` (jsonargparse's ``Subtypes:`` line).

    Args:
        name: a class path or bare class name that does not import.
        context: text naming the expected base classes by their dotted paths.
    """
    bases = tuple(cls for cls in map(import_class, DOTTED.findall(context)) if cls is not None)
    module_name, _, short = name.rpartition(".")
    pool: Dict[str, str] = {}  # shown path -> class name
    module = _module(module_name)
    if module is not None:
        pool.update({f"{module_name}.{key}": key for key, obj in vars(module).items()
                     if inspect.isclass(obj) and not key.startswith("_") and (not bases or issubclass(obj, bases))})
    for cls in (c for base in bases for c in _subclasses(base)):
        if ".<locals>." not in cls.__qualname__ and not cls.__name__.startswith("_"):
            pool.setdefault(f"{cls.__module__}.{cls.__qualname__}" if module_name else cls.__name__, cls.__name__)
    match = difflib.get_close_matches(short, set(pool.values()), n=1, cutoff=0.6)
    return next((shown for shown, key in pool.items() if match and key == match[0]), None)


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name) if name else None
    except ImportError:
        return None


def parameters(cls: type) -> List[str]:
    """The arguments ``cls`` accepts: a dataclass's fields, or the named parameters of its and its bases'
    ``__init__`` (a ``**kwargs`` passes the rest to the base)."""
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    names: List[str] = []
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names += [p.name for p in inspect.signature(klass.__init__).parameters.values()
                      if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return list(dict.fromkeys(names))


def type_name(text: str) -> str:
    """``<class 'collections.abc.Sequence'>`` -> ``Sequence``; ``NoneType`` -> ``null``."""
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text.strip())
    text = DOTTED.sub(lambda m: m.group(0).rsplit(".", 1)[-1], text)
    return "null" if text == "NoneType" else text


def _dotted(keys: List[str]) -> str:
    return ".".join(keys)


def _unknown_class(keys: List[str], name: str, context: str) -> str:
    closest = closest_class(name, context)
    hint = f"; closest importable class: {closest}" if closest else "; give a full import path (module.Class)"
    return f"{_dotted(keys)}: class_path '{name}' does not name an importable class{hint}"


def _in_class(path: str, nodes: List[Node], keys: List[str], context: str) -> str:
    """What went wrong with the arguments of the class ``path`` the user named (or with the class itself)."""
    cls = import_class(path)
    if cls is None:
        return _unknown_class(keys, path, context)
    inner = keys if dataclasses.is_dataclass(cls) else [*keys, "init_args"]
    for node in nodes:
        unknown = NOT_ACCEPTED.match(node.text)
        if unknown:
            match = difflib.get_close_matches(unknown.group(1), parameters(cls), n=1, cutoff=0.6)
            hint = f"; closest: {match[0]}" if match else f"; its arguments: {', '.join(parameters(cls))}"
            return f"{_dotted([*inner, unknown.group(1)])}: not an argument of {cls.__name__}{hint}"
    return _explain(nodes, inner) or f"{_dotted(keys)}: {path}: {nodes[0].text if nodes else 'refused'}"


def _explain(nodes: List[Node], keys: List[str], given: Optional[str] = None, context: str = "") -> Optional[str]:
    """One line for the failure among ``nodes`` (sibling lines) that the user's value caused, or None."""
    given = next((m.group(1) for n in nodes if (m := GIVEN.match(n.text))), given)
    context = next((n.text for n in nodes if n.text.startswith("Subtypes:")), context)
    for node in nodes:
        if node.text == "Errors:":
            return _explain(node.children, keys, given, context)
    for node in nodes:
        key, problem = KEY.match(node.text), PROBLEM.match(node.text)
        if key:
            path = [*keys, key.group(1)]
            return f"{_dotted(path)}: {key.group(2)}" if key.group(2) else _explain(node.children, path)
        if problem:  # the class the user named: its own arguments say what is wrong
            return _in_class(problem.group(1), node.children, keys, context)
    for node in nodes:
        unknown = IMPORT_PATH.match(node.text)
        if unknown:
            return _unknown_class(keys, unknown.group(1), context)
    expected = [m for n in nodes if (m := EXPECTED.match(n.text)) and not n.text.startswith("Expected a path ")]
    if not expected:
        return None
    value = next((m.group(2) for m in expected if m.group(2) is not None), given)
    types = " or ".join(dict.fromkeys(type_name(m.group(1)) for m in expected))
    return f"{_dotted(keys)}: expected {types}, got {value!r}"


def explain(message: str) -> Optional[str]:
    """The one line of a jsonargparse refusal of a value (``Parser key ...``): the key, the value and the
    expected type, or the class path and the closest importable class; None for other errors.

    Args:
        message: the message jsonargparse passes to ``ArgumentParser.error``.
    """
    if not message.startswith("Parser key "):
        return None
    return _explain(message_tree(message), [])


class OneLineErrors:
    """Mixed into an ``ArgumentParser``: a refused value raises ``ConfigError`` with ``explain``'s one line
    (``hyctas`` prints it and exits with status 2); any other error keeps the parser's own handling."""

    def error(self, message: str, ex: Optional[Exception] = None) -> Any:
        from hyctas_lightning.errors import ConfigError

        line = explain(message) if self.exit_on_error else None
        if line is not None:
            raise ConfigError(line) from ex
        return super().error(message, ex)


class HyctasArgumentParser(OneLineErrors, ArgumentParser):
    """The tools' ``ArgumentParser``, with one-line errors for refused values."""
