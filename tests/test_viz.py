"""The architecture views: the text table lists every cell, the diagram renders any valid architecture."""
import dataclasses
import random
import sys

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from hyctas_lightning.models import load_architecture
from hyctas_lightning.search_space import Architecture, SearchSpace
from hyctas_lightning.viz import draw_architecture, format_architecture, op_colour
from hyctas_lightning.viz.architecture import OP_COLOURS

PRESETS = ("hyctas_s", "hyctas_m", "hyctas_l")


def _preset(name: str) -> Architecture:
    return load_architecture(name)


def _random_architectures() -> list[Architecture]:
    space = SearchSpace(layers=16)
    return [space.sample(random.Random(seed), branches=n) for seed, n in enumerate((1, 2, 3, 2, 3))]


def _layer_rows(table: str) -> list[str]:
    return [line for line in table.splitlines() if line.startswith("L") and line[1].isdigit()]


def _assert_no_pyplot_figures() -> None:
    """The module must not register figures with pyplot (they would leak in long search runs)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or not pyplot.get_fignums()


@pytest.mark.parametrize("name", PRESETS)
def test_table_lists_every_op_and_one_row_per_layer(name):
    arch = _preset(name)
    table = format_architecture(arch)
    rows = _layer_rows(table)
    assert len(rows) == arch.num_layers
    assert arch.hash in table.splitlines()[0]
    for op in {op for b in arch.branches for op in b.ops}:
        assert op in table
    separators = {tuple(i for i, ch in enumerate(row) if ch == "|") for row in rows}
    assert len(separators) == 1  # columns aligned


def test_table_marks_shared_dropped_and_fused_cells():
    arch = next(a for a in _random_architectures() if a.num_branches == 3)
    table = format_architecture(arch)
    assert "(shared" in table  # every sampled extra branch forks off an earlier one
    for branch in arch.branches:
        for layer, node in enumerate(branch.nodes):
            if node == "drop":
                assert "-- drop --" in _layer_rows(table)[layer]


def test_table_shared_column_of_l_preset():
    arch = _preset("hyctas_l")
    _, lead, second, third = _layer_rows(format_architecture(arch))[0].split(" | ")
    assert second.strip() == "(shared)"
    assert third.strip() == "(shared with branch 0)"
    assert "128ch" in lead  # stride 8 * fch 16 * width 1


@pytest.mark.parametrize("arch", [_preset(n) for n in PRESETS] + _random_architectures(),
                         ids=list(PRESETS) + [f"random{i}" for i in range(5)])
def test_draw_writes_png(tmp_path, arch):
    path = tmp_path / "nested" / "arch.png"
    fig = draw_architecture(arch, path)
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(fig.canvas, FigureCanvasAgg)
    _assert_no_pyplot_figures()


def test_figure_width_grows_with_layers():
    narrow = draw_architecture(SearchSpace(layers=12).sample(random.Random(0), branches=1))
    wide = draw_architecture(SearchSpace(layers=30).sample(random.Random(0), branches=1))
    assert wide.get_figwidth() > narrow.get_figwidth()


@pytest.mark.parametrize("suffix", ["pdf", "svg"])
def test_draw_other_formats_and_title(tmp_path, suffix):
    path = tmp_path / f"arch.{suffix}"
    fig = draw_architecture(_preset("hyctas_s"), path, title="HyCTAS-S")
    assert path.stat().st_size > 0
    assert fig.axes[0].get_title() == "HyCTAS-S"


def test_unknown_op_gets_a_stable_fallback_colour(tmp_path):
    arch = _preset("hyctas_s")
    branch = dataclasses.replace(arch.branches[0], ops=("my_op",) + arch.branches[0].ops[1:])
    custom = Architecture((branch,), fch=arch.fch)
    assert op_colour("my_op") == op_colour("my_op")
    assert op_colour("my_op") not in OP_COLOURS.values()
    draw_architecture(custom, tmp_path / "custom.png")
    assert "my_op" in format_architecture(custom)
