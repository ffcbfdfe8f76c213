"""Human views of an Architecture: a plain-text table for logs and a layer x scale diagram (paper fig. 4 style).

Both read the architecture exactly as the networks are built (``models/graph.py``): one computation per group of
branches with identical genes so far, each cell's output at the input scale plus its down step, ``fuse`` mixing a
group with the other groups' outputs of the same layer, ``drop`` passing the input through.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch
from matplotlib.transforms import offset_copy

from hyctas_lightning.search_space import SCALES, Architecture, channels

# greens from light to dark for the convolution family, red for attention: the paper's colour coding
OP_COLOURS: dict[str, str] = {
    "light_conv": "#c7e9c0",
    "light_conv_2x": "#74c476",
    "conv": "#31a354",
    "conv_2x": "#006d2c",
    "mesa": "#de2d26",
}
BRANCH_STYLES: tuple[tuple[str, object], ...] = (("#2b5c8a", "-"), ("#8c510a", (0, (4, 2))), ("#6a3d9a", (0, (1, 1.5))))
FUSE_COLOUR, FUSE_EDGE, FUSE_AREA = "#fdd835", "#8d6e00", 38.0
DROP_COLOUR, DROP_AREA = "#bdbdbd", 22.0
LANE_SPREAD = 0.3  # vertical distance between distinct computations that share one scale row
LINE_GAP_PT = 2.6  # parallel offset of branch lines, so shared segments show every branch's path
STEM_X = -1.0


# ---------------------------------------------------------------------------------------------------- text table
def format_architecture(arch: Architecture) -> str:
    """A fixed-width table, one row per layer and one column per branch, for logs and reports."""
    op_width = max(len(op) for b in arch.branches for op in b.ops)
    rows = [[f"L{layer:<3}"] + _layer_cells(arch, layer, op_width) for layer in range(arch.num_layers)]
    titles = ["layer"] + [f"branch {i} -> s{b.end_scale}" for i, b in enumerate(arch.branches)]
    widths = [max(len(r[c]) for r in rows + [titles]) for c in range(len(titles))]
    lines = [f"Architecture {arch.hash}: {_summary(arch)}", _join(titles, widths), "-+-".join("-" * w for w in widths)]
    return "\n".join(lines + [_join(r, widths) for r in rows])


def _summary(arch: Architecture) -> str:
    """The build settings that the per-cell genes leave out, shared by the table header and the figure title."""
    strides = "/".join(str(s) for s in arch.end_scales)
    return (f"{arch.num_branches} branch{'es' if arch.num_branches > 1 else ''}, {arch.num_layers} layers, "
            f"final strides {strides}, fch {arch.fch}, output stride {arch.output_stride}, head {arch.head}, "
            f"classifier {arch.classifier}")


def _join(cells: list[str], widths: list[int]) -> str:
    return " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


def _layer_cells(arch: Architecture, layer: int, op_width: int) -> list[str]:
    """Cells of one layer; a branch computed together with a branch on its left repeats nothing."""
    leader = {i: group[0] for group in arch.groups(layer) for i in group}
    cells = []
    for i in range(arch.num_branches):
        if leader[i] == i:
            cells.append(_cell_text(arch, i, layer, op_width))
        else:
            cells.append("  (shared)" if leader[i] == i - 1 else f"  (shared with branch {leader[i]})")
    return cells


def _cell_text(arch: Architecture, index: int, layer: int, op_width: int) -> str:
    branch = arch.branches[index]
    op, width, down, node = branch.gene(layer)
    scale = branch.scale_index(layer)
    stride = SCALES[scale]
    if node == "drop":
        return f"s{stride:<2} -- drop --"
    c_out = channels(SCALES[scale + int(down)], arch.fch, width)
    text = f"s{stride:<2} {op:<{op_width}} x{width:.2f} {'↓' if down else ' '} {c_out:>4}ch"
    return f"{text} {node}" if node != "pass" else text


# ---------------------------------------------------------------------------------------------------- diagram
@dataclass(frozen=True)
class _Node:
    """One computation of the diagram: a group of branches at one layer, placed at its output scale."""

    layer: int
    group: tuple[int, ...]
    y: float
    op: str
    width: float
    node: str


def draw_architecture(arch: Architecture, path: Optional[Union[str, Path]] = None,
                      title: Optional[str] = None) -> Figure:
    """Draw ``arch`` over layers (x) and scales (y, stride 8 on top); save to ``path`` when given.

    Uses a bare Agg-backed ``Figure`` (no pyplot), so nothing global is opened or left behind.
    """
    nodes = _layout(arch)
    fig = Figure(figsize=(max(7.0, 1.6 + 0.55 * (arch.num_layers + 3)), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _draw_frame(ax, arch)
    _draw_branch_paths(ax, arch, nodes)
    _draw_fusions(ax, arch, nodes)
    _draw_cells(ax, nodes)
    _draw_legend(fig, arch)
    ax.set_title(title or f"{_summary(arch)}  [{arch.hash}]", fontsize=10)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    return fig


def op_colour(op: str) -> str:
    """Fixed colour per op; user ops get a stable colour (by name) from a palette far from the greens and red."""
    if op in OP_COLOURS:
        return OP_COLOURS[op]
    rgba = colormaps["cool"](0.1 + 0.8 * (zlib.crc32(op.encode()) % 1000) / 999)
    return "#{:02x}{:02x}{:02x}".format(*(int(255 * c) for c in rgba[:3]))


def _layout(arch: Architecture) -> dict[tuple[int, int], _Node]:
    """Node of every (layer, branch); groups landing on the same scale row are spread over lanes."""
    placed: dict[tuple[int, int], _Node] = {}
    for layer in range(arch.num_layers):
        rows: dict[int, list[tuple[int, ...]]] = {}
        for group in arch.groups(layer):
            rows.setdefault(_out_scale(arch, group[0], layer), []).append(group)
        for scale, groups in rows.items():
            for lane, group in enumerate(groups):
                op, width, _, node = arch.branches[group[0]].gene(layer)
                y = -scale + LANE_SPREAD * ((len(groups) - 1) / 2 - lane)
                for i in group:
                    placed[layer, i] = _Node(layer, group, y, op, width, node)
    return placed


def _out_scale(arch: Architecture, index: int, layer: int) -> int:
    branch = arch.branches[index]
    return branch.scale_index(layer) + int(branch.downs[layer] and branch.active(layer))


def _head_x(arch: Architecture) -> float:
    return arch.num_layers + 0.2


def _draw_frame(ax: Axes, arch: Architecture) -> None:
    """Scale rows, layer ticks, the stem and the aggregation head that frame the searched cells."""
    deepest = max(SCALES.index(s) for s in arch.end_scales)
    for scale in range(len(SCALES)):
        ax.axhline(-scale, color="#eeeeee", lw=6, zorder=0)
    ax.set_yticks([-s for s in range(len(SCALES))], [f"stride {s}" for s in SCALES])
    ticks = [STEM_X] + list(range(arch.num_layers)) + [_head_x(arch)]
    ax.set_xticks(ticks, ["stem"] + [str(layer) for layer in range(arch.num_layers)] + ["head"], fontsize=8)
    ax.set_xlabel("layer")
    ax.set_xlim(STEM_X - 0.6, _head_x(arch) + 0.7)
    ax.set_ylim(-len(SCALES) + 0.45, 0.55)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    _box(ax, STEM_X, 0.0, 0.0, "stem")
    label = "head" if arch.output_stride == 8 else "head\n+s4"
    _box(ax, _head_x(arch), 0.0, -float(deepest), label)


def _box(ax: Axes, x: float, top: float, bottom: float, label: str) -> None:
    half = 0.32
    ax.add_patch(FancyBboxPatch((x - half, bottom - 0.22), 2 * half, top - bottom + 0.44,
                                boxstyle="round,pad=0.02,rounding_size=0.12", fc="#f5f5f5", ec="#525252",
                                lw=1.0, zorder=4))
    ax.text(x, (top + bottom) / 2, label, ha="center", va="center", fontsize=7, zorder=5)


def _draw_branch_paths(ax: Axes, arch: Architecture, nodes: dict[tuple[int, int], _Node]) -> None:
    """One polyline per branch from the stem to the head, shifted sideways so shared stretches show a bundle."""
    count = arch.num_branches
    for i in range(count):
        colour, dashes = BRANCH_STYLES[i % len(BRANCH_STYLES)]
        points = [(STEM_X, 0.0)] + [(layer, nodes[layer, i].y) for layer in range(arch.num_layers)]
        points.append((_head_x(arch), points[-1][1]))
        shift = offset_copy(ax.transData, fig=ax.figure, y=LINE_GAP_PT * ((count - 1) / 2 - i), units="points")
        xs, ys = zip(*points)
        ax.plot(xs, ys, color=colour, ls=dashes, lw=1.6, transform=shift, zorder=2, solid_capstyle="round")


def _draw_fusions(ax: Axes, arch: Architecture, nodes: dict[tuple[int, int], _Node]) -> None:
    """A thin dashed line through the computations of every layer that fuses: they are the fusion's inputs.

    Every computation of a layer sits at the same x, so one line from the top to the bottom one links them all.
    """
    for layer in range(arch.num_layers):
        column = [nodes[layer, group[0]] for group in arch.groups(layer)]
        if len(column) > 1 and any(n.node == "fuse" for n in column):
            ys = [n.y for n in column]
            ax.plot([layer, layer], [min(ys), max(ys)], color="#b8960b", lw=0.8, ls=(0, (2, 2)), zorder=1.5)


def _draw_cells(ax: Axes, nodes: dict[tuple[int, int], _Node]) -> None:
    """Active cells as op-coloured circles (area grows with width) with a yellow badge when they fuse; drops grey."""
    distinct = {(n.layer, n.group): n for n in nodes.values()}.values()
    for node in distinct:
        if node.node == "drop":
            ax.scatter(node.layer, node.y, s=DROP_AREA, marker="o", fc="white", ec=DROP_COLOUR, lw=1.4, zorder=3)
            continue
        area = _cell_area(node.width)
        ax.scatter(node.layer, node.y, s=area, marker="o", fc=op_colour(node.op), ec="#222222", lw=0.7, zorder=3)
        if node.node == "fuse":
            corner = 0.4 * area ** 0.5  # just outside the circle, towards its upper right
            badge = offset_copy(ax.transData, fig=ax.figure, x=corner, y=corner, units="points")
            ax.scatter(node.layer, node.y, s=FUSE_AREA, marker="D", fc=FUSE_COLOUR, ec=FUSE_EDGE, lw=0.7,
                       transform=badge, zorder=3.5)


def _cell_area(width: float) -> float:
    """Marker area in pt^2: linear in the width multiplier, still visible at the smallest widths."""
    return 40.0 + 180.0 * width


def _draw_legend(fig: Figure, arch: Architecture) -> None:
    """Two legend rows below the plot: what the cells are (ops, widths), then what connects them."""
    ops = list(dict.fromkeys(op for b in arch.branches for op, node in zip(b.ops, b.nodes) if node != "drop"))
    ops.sort(key=lambda op: (list(OP_COLOURS).index(op) if op in OP_COLOURS else len(OP_COLOURS), op))
    cells = [_marker(op, "o", op_colour(op), "#222222", _cell_area(1.0)) for op in ops]
    cells += [_marker(f"width {w}", "o", "#ffffff", "#222222", _cell_area(w)) for w in (0.33, 1.0)]
    links = [_marker("fuse", "D", FUSE_COLOUR, FUSE_EDGE, FUSE_AREA), _marker("drop", "o", "#ffffff", DROP_COLOUR,
                                                                            DROP_AREA)]
    for i, b in enumerate(arch.branches):
        colour, dashes = BRANCH_STYLES[i % len(BRANCH_STYLES)]
        links.append(Line2D([], [], color=colour, ls=dashes, lw=1.6, label=f"branch {i} → s{b.end_scale}"))
    ncol = max(len(cells), len(links))
    rows = [row + [Line2D([], [], ls="", label="")] * (ncol - len(row)) for row in (cells, links)]
    # legends fill column by column: interleave so that each list reads as one row
    fig.legend(handles=[row[c] for c in range(ncol) for row in rows], loc="outside lower center", ncol=ncol,
               fontsize=7, frameon=False, handletextpad=0.4, columnspacing=1.4)


def _marker(label: str, marker: str, face: str, edge: str, area: float) -> Line2D:
    return Line2D([], [], ls="", marker=marker, markersize=area ** 0.5, markerfacecolor=face, markeredgecolor=edge,
                  label=label)
