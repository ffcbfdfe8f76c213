"""The package as users get it: an import graph without cycles or upward imports, presets inside the wheel."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "hyctas_lightning"
# Lower layers never import higher ones; within one layer, sub-packages may import each other without cycles.
LAYERS = [
    {"registry", "fileio", "locks", "processes", "checkpoints", "errors"},
    {"layers"},
    {"ops"},
    {"search_space"},
    {"models"},
    {"data", "evaluation", "viz"},
    {"ranking"},
    {"training", "search", "deploy"},
    {"pipeline"},
    {"cli"},
]
LEVEL = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def unit_of(module: str) -> str | None:
    """The layer unit of a dotted module name inside the package (``hyctas_lightning.models.supernet`` -> models)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "hyctas_lightning" else None


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """Every package module ``path`` imports, and whether the import runs at module level (not inside a function)."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    found = []
    top = {id(n) for n in tree.body}
    top |= {id(c) for n in tree.body if isinstance(n, (ast.If, ast.Try)) for c in ast.walk(n)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        found += [(n, id(node) in top) for n in names if n.startswith("hyctas_lightning")]
    return found


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_no_module_imports_a_higher_layer():
    upward = []
    for name, path in modules().items():
        src = unit_of(name)
        if src is None or src not in LEVEL:
            continue
        for target, _ in imports_of(path):
            dst = unit_of(target)
            if dst in LEVEL and LEVEL[dst] > LEVEL[src]:
                upward.append(f"{name} imports {target}")
    assert not upward, "upward imports:\n" + "\n".join(upward)
    assert set(LEVEL) >= {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}, \
        "a new sub-package needs its place in LAYERS"


def related(a: str, b: str) -> bool:
    """A package and its own sub-modules: importing a sub-module runs the package first, which is no cycle."""
    return a.startswith(b + ".") or b.startswith(a + ".")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (edges between a package and its sub-modules ignored), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if related(node, nxt):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def test_module_level_imports_have_no_cycles():
    known = modules()
    graph = {name: {t for t, top in imports_of(path) if top and t in known and t != name}
             for name, path in known.items()}
    assert find_cycle(graph) is None, "import cycle: " + " -> ".join(find_cycle(graph))


def test_cycle_finder_finds_cycles_and_ignores_packages():
    assert find_cycle({"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}}) == ["p.a", "p.b", "p.c", "p.a"]
    assert find_cycle({"p": {"p.a"}, "p.a": {"p"}, "p.b": {"p.a"}}) is None


def test_the_graph_walker_sees_imports():
    graph = {name: {t for t, _ in imports_of(path)} for name, path in modules().items()}
    assert "hyctas_lightning.models.childnet" in graph["hyctas_lightning.models.factory"]
    assert "hyctas_lightning.checkpoints" in graph["hyctas_lightning.models.factory"]
    assert any(t.startswith("hyctas_lightning.search") for t in graph["hyctas_lightning.cli.search"])


@pytest.mark.slow
def test_presets_ship_in_the_wheel_and_build_outside_the_repo(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, timeout=600)
    wheel, = tmp_path.glob("hyctas_lightning-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"hyctas_lightning/models/presets/hyctas_{n}.json" for n in "sml"} <= set(names)
    code = ("import hyctas_lightning as h; net = h.create_network('hyctas_s', num_classes=11); "
            "print(h.__file__); print(net.classifier.out_channels, sorted(h.list_networks('hyctas_*')))")
    env = {**os.environ, "PYTHONPATH": str(wheel)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    location, result = out.stdout.splitlines()[-2:]
    assert str(wheel) in location  # imported from the wheel, not from the source tree
    assert result.startswith("11 [") and "'hyctas_s'" in result


def readme_layout() -> str:
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Layout"):]
    return block[block.index("```") + 3:block.index("```", block.index("```") + 3)]


def test_readme_layout_names_every_package_module_and_folder():
    layout = readme_layout()
    named = {line.split()[0] for line in layout.splitlines() if line.strip()}
    package = ROOT / "src" / "hyctas_lightning"
    parts = {f"{p.name}/" for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    parts |= {p.name for p in package.glob("*.py") if p.name != "__init__.py"}
    assert parts <= named, f"README's layout misses {sorted(parts - named)}"
    assert {n for n in named if n.endswith((".py", "/"))} - {"src/hyctas_lightning/"} <= parts | {
        f"{p.name}/" for p in ROOT.iterdir() if p.is_dir()}, "README's layout names something that is not there"
    configs = {p.name for p in (ROOT / "configs").iterdir() if p.is_dir()}
    assert all(f"{c}/" in layout for c in configs), f"README's layout misses a configs folder of {sorted(configs)}"


MAX_CLASS_LINES = 200


def test_no_class_in_the_package_is_over_200_lines():
    """A class past this size does several jobs: split it into small parts (module functions, helper classes)."""
    long = [f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in PACKAGE.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES]
    assert not long, "classes over 200 lines:\n" + "\n".join(long)


def test_the_pipeline_driver_stays_thin():
    assert len((PACKAGE / "pipeline" / "run.py").read_text().splitlines()) < 200
