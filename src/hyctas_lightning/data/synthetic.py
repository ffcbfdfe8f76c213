"""Procedural street scenes: the embedded default dataset, so every command runs with no download.

A scene is drawn back to front with vectorised numpy from one seed: sky, buildings with windows, a road in
perspective with lane markings, sidewalks, then trees, cars, poles and people sorted by depth. Colours are
jittered per object and per image (car paint may copy the road or a facade, skies may be overcast grey),
and the horizon, vanishing point and road width move, so neither colour nor position alone gives the labels.
Every car, pole and person is an instance of its own (the panoptic view's things); the rest is stuff.
"""
from __future__ import annotations

import zlib
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

from .base import Sample, SegmentationDataModule, SegmentationDataset
from .labels import LABEL_DIVISOR
from .registry import register_datamodule
from .transforms import SegmentationTransform, TransformConfig

SYNTHETIC_CLASSES = ("road", "sidewalk", "building", "sky", "car", "pole", "person", "vegetation")
ROAD, SIDEWALK, BUILDING, SKY, CAR, POLE, PERSON, VEGETATION = range(len(SYNTHETIC_CLASSES))
SYNTHETIC_THINGS = ("car", "pole", "person")
# Cityscapes colours for the same classes, so plots read like the real benchmark's.
SYNTHETIC_PALETTE = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (70, 130, 180),
    (0, 0, 142), (153, 153, 153), (220, 20, 60), (107, 142, 35),
]

# Base colours (RGB in [0, 1]); each draw jitters them, and several deliberately overlap across classes.
_FACADES = np.array([[0.76, 0.70, 0.58], [0.52, 0.52, 0.52], [0.60, 0.32, 0.24], [0.86, 0.85, 0.80],
                     [0.32, 0.32, 0.35], [0.80, 0.72, 0.45], [0.62, 0.60, 0.55]], np.float32)
_ASPHALT = np.array([[0.36, 0.36, 0.38], [0.28, 0.28, 0.30], [0.45, 0.44, 0.42], [0.38, 0.35, 0.33]], np.float32)
_PAVING = np.array([[0.64, 0.62, 0.60], [0.72, 0.66, 0.56], [0.62, 0.44, 0.42], [0.48, 0.48, 0.50]], np.float32)
_PAINTS = np.array([[0.90, 0.90, 0.90], [0.70, 0.71, 0.73], [0.42, 0.42, 0.44], [0.08, 0.08, 0.09],
                    [0.12, 0.18, 0.42], [0.70, 0.10, 0.10], [0.20, 0.40, 0.75], [0.70, 0.64, 0.50],
                    [0.14, 0.32, 0.18]], np.float32)
_FOLIAGE = np.array([[0.22, 0.42, 0.16], [0.34, 0.50, 0.20], [0.16, 0.30, 0.14], [0.55, 0.50, 0.20],
                     [0.45, 0.55, 0.30]], np.float32)
_CLOTHES = np.array([[0.15, 0.15, 0.18], [0.80, 0.15, 0.15], [0.20, 0.30, 0.60], [0.85, 0.85, 0.80],
                     [0.45, 0.40, 0.30], [0.25, 0.45, 0.25], [0.55, 0.55, 0.58]], np.float32)
_SKIN = np.array([[0.95, 0.78, 0.65], [0.78, 0.57, 0.42], [0.45, 0.30, 0.20]], np.float32)
_METAL = np.array([[0.55, 0.56, 0.58], [0.20, 0.22, 0.22], [0.18, 0.30, 0.22], [0.70, 0.70, 0.68]], np.float32)
_GLASS = np.array([[0.12, 0.15, 0.22], [0.30, 0.38, 0.48], [0.85, 0.80, 0.55]], np.float32)
_MARKINGS = np.array([[0.92, 0.92, 0.90], [0.90, 0.78, 0.25]], np.float32)
# Clear, overcast and dusk skies, as (zenith, horizon) colour pairs.
_SKY_TOPS = np.array([[0.25, 0.45, 0.80], [0.60, 0.62, 0.64], [0.35, 0.30, 0.50]], np.float32)
_SKY_LOWS = np.array([[0.70, 0.82, 0.95], [0.78, 0.78, 0.78], [0.95, 0.65, 0.40]], np.float32)
_BARK = np.float32([0.30, 0.22, 0.15])
_TYRE = np.float32([0.06, 0.06, 0.06])
_TAIL_LIGHT = np.float32([0.85, 0.10, 0.08])
_TINT = np.float32([0.10, 0.12, 0.16])

_EVERYWHERE = np.ones((1, 1), bool)  # a region that fills its whole box
_Window = Tuple[Tuple[slice, slice], np.ndarray, np.ndarray]


class _Canvas:
    """Float RGB image, label mask and instance ids, painted back to front so later strokes occlude earlier
    ones. Each stroke of a thing class is a new instance (1, 2, ...); stuff strokes write instance 0."""

    def __init__(self, height: int, width: int, rng: np.random.Generator) -> None:
        self.h, self.w = height, width
        self.image = np.zeros((height, width, 3), np.float32)
        self.mask = np.zeros((height, width), np.uint8)
        self.instances = np.zeros((height, width), np.int32)
        self.count = 0
        # One grain field shared by all surfaces: drawing fresh noise per object would dominate render time.
        self.grain = rng.standard_normal((height, width), dtype=np.float32)

    def window(self, y0: float, y1: float, x0: float, x1: float) -> Optional[_Window]:
        """Clip a box to the canvas and give its row/column coordinates, so shapes cost only their box."""
        r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)), self.h)
        c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), self.w)
        if r0 >= r1 or c0 >= c1:
            return None
        ys = np.arange(r0, r1, dtype=np.float32)[:, None]
        xs = np.arange(c0, c1, dtype=np.float32)[None, :]
        return (slice(r0, r1), slice(c0, c1)), ys, xs

    def paint(self, box: Tuple[slice, slice], region: np.ndarray, colour: np.ndarray, label: int) -> None:
        """Write ``colour`` (a field or one RGB) and ``label`` where ``region`` holds inside ``box``."""
        np.copyto(self.image[box], colour, where=region[..., None])
        np.copyto(self.mask[box], np.uint8(label), where=region)
        instance = 0
        if SYNTHETIC_CLASSES[label] in SYNTHETIC_THINGS:
            self.count += 1
            instance = self.count
        np.copyto(self.instances[box], np.int32(instance), where=region)

    def texture(self, rng: np.random.Generator, box: Tuple[slice, slice], base: np.ndarray, blotch: float = 0.12,
                grain: float = 0.04, cell: float = 6.0) -> np.ndarray:
        """``base`` modulated by blotches and luminance grain over ``box``: surfaces look worn, not flat."""
        grain_field = self.grain[box]
        field = 1.0 + blotch * _smooth_noise(rng, grain_field.shape, cell) + grain * grain_field
        return base * field[..., None]


def _smooth_noise(rng: np.random.Generator, shape: Tuple[int, int], cell: float) -> np.ndarray:
    """Bilinearly upsampled Gaussian noise of feature size ``cell`` pixels: cheap blotches and clouds."""
    h, w = shape
    cell = max(cell, 1.0)
    coarse = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2), dtype=np.float32)
    fy = np.arange(h, dtype=np.float32) / cell
    fx = np.arange(w, dtype=np.float32) / cell
    iy, ix = fy.astype(np.int64), fx.astype(np.int64)
    ty, tx = (fy - iy)[:, None], (fx - ix)[None, :]
    rows = coarse[iy] * (1 - ty) + coarse[iy + 1] * ty  # separable: interpolate rows, then columns
    return rows[:, ix] * (1 - tx) + rows[:, ix + 1] * tx


def _pick(rng: np.random.Generator, table: np.ndarray, jitter: float = 0.05) -> np.ndarray:
    """One base colour from ``table`` with a per-object shift, so no class has a single exact colour."""
    colour = table[rng.integers(len(table))] + rng.normal(0.0, jitter, 3).astype(np.float32)
    return np.clip(colour, 0.0, 1.0)


def _superellipse(u: np.ndarray, v: np.ndarray, power: float = 4.0) -> np.ndarray:
    """Inside a rounded box of half-size 1 centred on 0: car bodies and torsos with soft corners."""
    return np.abs(u) ** power + np.abs(v) ** power < 1.0


class _Street:
    """The scene layout shared by every drawing step: horizon, road axis and widths, scene colours."""

    def __init__(self, rng: np.random.Generator, height: int, width: int) -> None:
        self.horizon = height * rng.uniform(0.28, 0.55)
        self.vx = width * rng.uniform(0.25, 0.75)
        self.road_k = width * rng.uniform(0.25, 0.50) / (height - self.horizon)  # half-width per row of depth
        self.walk_k = self.road_k * rng.uniform(1.35, 1.8)
        self.bend = self.road_k * rng.uniform(-0.8, 0.8)  # road centre shift per row below the horizon
        self.asphalt = _pick(rng, _ASPHALT, 0.03)
        self.facade = _pick(rng, _FACADES, 0.05)

    def centre(self, y: np.ndarray | float) -> np.ndarray | float:
        return self.vx + self.bend * (y - self.horizon)

    def depth(self, y: np.ndarray | float) -> np.ndarray | float:
        """Rows below the horizon: apparent size scales with it."""
        return np.maximum(y - self.horizon, 0.0)

    def hidden_below(self, x: float) -> float:
        """First row from which column ``x`` lies on the sidewalk or road, so a facade need not go lower."""
        side = np.sign(x - self.vx)
        return self.horizon + abs(x - self.vx) / (self.walk_k + side * self.bend)  # walk_k > |bend|


def _draw_sky(c: _Canvas, rng: np.random.Generator, st: _Street) -> None:
    """Vertical gradient with clouds; overcast and dusk skies share colours with concrete and facades."""
    kind = rng.choice(3, p=[0.55, 0.30, 0.15])
    top = np.clip(_SKY_TOPS[kind] + rng.normal(0, 0.05, 3), 0, 1).astype(np.float32)
    low = np.clip(_SKY_LOWS[kind] + rng.normal(0, 0.05, 3), 0, 1).astype(np.float32)
    box, ys, _ = c.window(0, c.h, 0, c.w)
    t = np.clip(ys / max(st.horizon, 1.0), 0, 1)[..., None]
    colour = top * (1 - t) + low * t
    clouds = np.clip(_smooth_noise(rng, (c.h, c.w), c.w / rng.uniform(4, 10)) - 0.3, 0, 1)[..., None]
    colour = colour * (1 - 0.6 * clouds) + 0.92 * 0.6 * clouds
    c.paint(box, _EVERYWHERE, colour, SKY)


def _draw_ground(c: _Canvas, rng: np.random.Generator, st: _Street) -> None:
    """Grass below the horizon, shown in gaps between buildings and beside the sidewalk."""
    found = c.window(st.horizon, c.h, 0, c.w)
    if found is None:
        return
    box = found[0]
    grass = c.texture(rng, box, _pick(rng, _FOLIAGE), blotch=0.25, grain=0.10, cell=3)
    c.paint(box, _EVERYWHERE, grass, VEGETATION)


def _draw_buildings(c: _Canvas, rng: np.random.Generator, st: _Street) -> None:
    """A row of facades down to the image bottom (road and sidewalk cover their bases); taller near the edges."""
    x = -rng.uniform(0, 0.1) * c.w
    while x < c.w:
        width = c.w * rng.uniform(0.08, 0.30)
        if rng.random() < 0.15:  # a gap where sky and grass show through
            x += 0.5 * width
            continue
        height = c.h * (rng.uniform(0.05, 0.25) + 0.5 * abs(x + width / 2 - st.vx) / c.w)
        _draw_facade(c, rng, st, x, x + width, st.horizon - height)
        x += width


def _draw_facade(c: _Canvas, rng: np.random.Generator, st: _Street, x0: float, x1: float, top: float) -> None:
    """One building: textured wall, a grid of windows and a darker roof band."""
    found = c.window(top, max(st.hidden_below(x0), st.hidden_below(x1)) + 1, x0, x1)
    if found is None:
        return
    box, ys, xs = found
    base = st.facade if rng.random() < 0.3 else _pick(rng, _FACADES)
    wall = c.texture(rng, box, base, blotch=0.10, grain=0.05, cell=4)
    wall *= (1.0 - 0.08 * (np.sin(ys * rng.uniform(0.8, 1.6)) > 0.6))[..., None]  # course lines
    scale = c.h / 128
    px, py = rng.uniform(5, 12) * scale, rng.uniform(6, 13) * scale
    fx, fy = rng.uniform(0.35, 0.7), rng.uniform(0.35, 0.65)
    margin = rng.uniform(2, 6) * scale
    windows = (((xs - x0 - margin) % px) < px * fx) & (((ys - top - margin) % py) < py * fy)
    windows &= (ys > top + margin) & (xs > x0 + margin / 2) & (xs < x1 - margin / 2)
    glass = _pick(rng, _GLASS)
    wall = np.where(windows[..., None], c.texture(rng, box, glass, blotch=0.3, cell=2), wall)
    wall *= np.where(ys < top + 1.5 * scale, 0.6, 1.0)[..., None]
    c.paint(box, _EVERYWHERE, wall, BUILDING)


def _draw_street(c: _Canvas, rng: np.random.Generator, st: _Street) -> None:
    """Sidewalk and road as nested perspective trapezoids, with tiles, a curb and dashed lane markings."""
    found = c.window(st.horizon, c.h, 0, c.w)
    if found is None:
        return
    box, ys, xs = found
    depth = np.maximum(ys - st.horizon, 1e-3)
    offset = xs - st.centre(ys)
    half = st.road_k * depth
    walk = np.abs(offset) < st.walk_k * depth
    paving = c.texture(rng, box, _pick(rng, _PAVING), blotch=0.08, grain=0.06, cell=3)
    tile = rng.uniform(15, 40) * c.h / 128
    joints = ((tile / depth) % 1.0 < 0.12) | (((np.abs(offset) - half) / depth * 4.0) % 1.0 < 0.1)
    paving *= np.where(joints, 0.8, 1.0)[..., None]
    paving = np.where((np.abs(np.abs(offset) - half) < 0.06 * depth + 0.5)[..., None], 0.85, paving)  # curb
    c.paint(box, walk, paving, SIDEWALK)

    asphalt = c.texture(rng, box, st.asphalt, blotch=0.15, grain=0.08, cell=5)
    paint = _pick(rng, _MARKINGS, 0.03)
    dash = rng.uniform(10, 30) * c.h / 128
    line = np.maximum(0.025 * half, 0.35)
    centre_line = (np.abs(offset) < line) & ((dash / depth) % 1.0 < 0.5)
    edge_lines = np.abs(np.abs(offset) - 0.92 * half) < 0.7 * line
    asphalt = np.where((centre_line | edge_lines)[..., None], paint, asphalt)
    c.paint(box, np.abs(offset) < half, asphalt, ROAD)


def _draw_car(c: _Canvas, rng: np.random.Generator, st: _Street, ground: float) -> None:
    """Box body with a narrower cabin, dark windows, wheels and tail lights; paint may copy road or facade."""
    half = st.road_k * st.depth(ground)
    width = half * rng.uniform(0.65, 0.9)
    height = width * rng.uniform(0.6, 0.85)
    lane = rng.choice([-0.5, 0.5, -0.85, 0.85])
    cx = st.centre(ground) + (lane + rng.normal(0, 0.06)) * half
    found = c.window(ground - height, ground, cx - width / 2, cx + width / 2)
    if found is None:
        return
    box, ys, xs = found
    u = (xs - cx) / (width / 2)
    v = (ground - ys) / height  # 0 at the ground, 1 at the roof
    mimic = rng.random()
    base = st.asphalt if mimic < 0.12 else st.facade if mimic < 0.25 else _pick(rng, _PAINTS, 0.04)
    body = c.texture(rng, box, base, blotch=0.06, grain=0.04, cell=3) * (0.75 + 0.35 * v)[..., None]
    lower = _superellipse(u, (v - 0.34) / 0.22)
    taper = 0.8 - 0.3 * (v - 0.55) / 0.45
    cabin = (v >= 0.5) & (v < 0.97) & (np.abs(u) < taper)
    glass = (v > 0.6) & (v < 0.9) & (np.abs(u) < taper - 0.1)
    wheels = ((np.abs(u) - 0.62) / 0.2) ** 2 + ((v - 0.14) / 0.14) ** 2 < 1.0
    lights = (np.abs(u) > 0.72) & (np.abs(u) < 0.92) & (v > 0.4) & (v < 0.5)
    colour = np.where(glass[..., None], _TINT + 0.1 * v[..., None], body)
    colour = np.where(lights[..., None], _TAIL_LIGHT, colour)
    colour = np.where(wheels[..., None], _TYRE, colour)
    c.paint(box, lower | cabin | wheels, colour, CAR)


def _person_height(st: _Street, ground: float) -> float:
    """People stand about as tall as a lane is wide, and are never drawn below 5 pixels."""
    return max(0.75 * st.road_k * st.depth(ground), 5.0)


def _beside_road(rng: np.random.Generator, st: _Street, ground: float, lo: float, hi: float) -> float:
    """A column on the sidewalk at ``ground``, ``lo..hi`` of the way from the curb to its outer edge."""
    depth = st.depth(ground)
    side = rng.choice([-1.0, 1.0])
    return st.centre(ground) + side * (st.road_k + rng.uniform(lo, hi) * (st.walk_k - st.road_k)) * depth


def _draw_person(c: _Canvas, rng: np.random.Generator, st: _Street, ground: float) -> None:
    """Head, torso, arms and striding legs; mostly on the sidewalk, sometimes crossing the road."""
    height = _person_height(st, ground) * rng.uniform(0.85, 1.1)
    if rng.random() < 0.2:
        px = st.centre(ground) + rng.uniform(-0.9, 0.9) * st.road_k * st.depth(ground)
    else:
        px = _beside_road(rng, st, ground, 0.1, 0.9)
    found = c.window(ground - height, ground, px - 0.3 * height, px + 0.3 * height)
    if found is None:
        return
    box, ys, xs = found
    u = (xs - px) / height
    v = (ground - ys) / height
    stride = rng.uniform(0.0, 0.08)
    head = (u / 0.075) ** 2 + ((v - 0.91) / 0.085) ** 2 < 1.0
    torso = _superellipse(u / 0.13, (v - 0.63) / 0.2)
    arms = (np.abs(u) > 0.10) & (np.abs(u) < 0.17 + 0.3 * stride) & (v > 0.47) & (v < 0.8)
    legs = (v < 0.46) & ((np.abs(u - 0.05 - stride * (0.46 - v)) < 0.045)
                         | (np.abs(u + 0.05 + stride * (0.46 - v)) < 0.045))
    colour = np.where((v < 0.45)[..., None], _pick(rng, _CLOTHES), _pick(rng, _CLOTHES))
    colour = np.where(head[..., None], _pick(rng, _SKIN, 0.03), colour)
    c.paint(box, head | torso | arms | legs, colour, PERSON)


def _draw_pole(c: _Canvas, rng: np.random.Generator, st: _Street, ground: float) -> None:
    """A thin post on the sidewalk topped by a lamp arm or a sign plate."""
    height = _person_height(st, ground) * rng.uniform(2.2, 3.5)
    px = _beside_road(rng, st, ground, 0.4, 0.95)
    half_width = max(0.02 * height, 0.6)
    arm = height * rng.uniform(0.15, 0.3) * np.sign(st.centre(ground) - px)
    found = c.window(ground - height, ground, min(px, px + arm) - 2 * half_width, max(px, px + arm) + 2 * half_width)
    if found is None:
        return
    box, ys, xs = found
    top = ground - height
    post = np.abs(xs - px) < half_width
    if rng.random() < 0.6:
        lo, hi = min(px, px + arm), max(px, px + arm)
        head = (ys < top + 2 * half_width) & (xs >= lo) & (xs <= hi)
        head |= (np.abs(xs - (px + arm)) < 2 * half_width) & (ys < top + 4 * half_width)
    else:
        head = (np.abs(xs - px) < 5 * half_width) & (ys < top + 10 * half_width)
    metal = c.texture(rng, box, _pick(rng, _METAL), blotch=0.05, grain=0.05, cell=2)
    c.paint(box, post | head, metal, POLE)


def _draw_tree(c: _Canvas, rng: np.random.Generator, st: _Street, ground: float) -> None:
    """A trunk and a canopy of overlapping ellipses with ragged, noise-perturbed edges."""
    height = _person_height(st, ground) * rng.uniform(2.5, 4.5)
    px = _beside_road(rng, st, ground, 0.5, 1.3)
    radius = height * rng.uniform(0.22, 0.35)
    found = c.window(ground - height - radius, ground, px - 1.6 * radius, px + 1.6 * radius)
    if found is None:
        return
    box, ys, xs = found
    shape = (ys.shape[0], xs.shape[1])
    trunk = (np.abs(xs - px) < max(0.025 * height, 0.6)) & (ys > ground - height + radius)
    field = _smooth_noise(rng, shape, max(radius / 3, 1.0)) * 0.25
    canopy = np.zeros(shape, bool)
    for _ in range(rng.integers(3, 6)):
        cx = px + rng.normal(0, 0.45) * radius
        cy = ground - height + rng.normal(0, 0.35) * radius
        r = radius * rng.uniform(0.55, 0.9)
        canopy |= ((xs - cx) ** 2 + (ys - cy) ** 2) / r ** 2 + field < 1.0
    leaves = c.texture(rng, box, _pick(rng, _FOLIAGE), blotch=0.35, grain=0.12, cell=2)
    c.paint(box, canopy | trunk, np.where(canopy[..., None], leaves, _BARK), VEGETATION)


_DrawAt = Callable[[_Canvas, np.random.Generator, _Street, float], None]  # draws one object standing on a row
# Each object kind with its count range per scene (numpy's half-open ``integers(low, high)``).
_OBJECTS: Tuple[Tuple[_DrawAt, int, int], ...] = (
    (_draw_tree, 1, 4), (_draw_car, 1, 5), (_draw_pole, 1, 4), (_draw_person, 1, 5),
)


def _draw_objects(c: _Canvas, rng: np.random.Generator, st: _Street, density: float = 1.0) -> None:
    """Place trees, cars, poles and people at random ground rows and draw the far ones first; ``density``
    scales how many of each there are."""
    placed: List[Tuple[float, _DrawAt]] = []
    for draw, low, high in _OBJECTS:
        count = rng.integers(low, high)
        for _ in range(count if density == 1.0 else round(count * density)):
            placed.append((st.horizon + (c.h - st.horizon) * rng.uniform(0.12, 1.1), draw))
    for ground, draw in sorted(placed, key=lambda item: item[0]):
        draw(c, rng, st, ground)


def _finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-image white balance, brightness and sensor noise, then quantise to uint8."""
    gain = rng.uniform(0.65, 1.3) * rng.normal(1.0, 0.07, 3).astype(np.float32)
    noisy = image * gain + rng.uniform(0.015, 0.05) * rng.standard_normal(image.shape, dtype=np.float32)
    return (np.clip(noisy, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_panoptic_scene(seed: int, size: Tuple[int, int] = (128, 256),
                          density: float = 1.0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one street scene as ``(image uint8 HxWx3, mask uint8 HxW, instances int32 HxW)``, a pure function
    of ``seed`` (and ``density``, the number of objects relative to the default); ``instances`` numbers the
    visible cars, poles and people 1, 2, ... (0 elsewhere).

    Args:
        seed: the scene's seed.
        size: (height, width) in pixels.
        density: objects per scene relative to the default (positive).
    """
    if density <= 0:
        raise ValueError(f"density must be positive, got {density}")
    rng = np.random.default_rng(seed)
    height, width = int(size[0]), int(size[1])
    canvas = _Canvas(height, width, rng)
    street = _Street(rng, height, width)
    for step in (_draw_sky, _draw_ground, _draw_buildings, _draw_street):
        step(canvas, rng, street)
    _draw_objects(canvas, rng, street, density)
    return _finish(canvas.image, rng), canvas.mask, canvas.instances


def render_scene(seed: int, size: Tuple[int, int] = (128, 256), density: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """Render one street scene as ``(image uint8 HxWx3, mask uint8 HxW)``; a pure function of ``seed``.

    Args:
        seed: the scene's seed.
        size: (height, width) in pixels.
        density: objects per scene relative to the default (positive).
    """
    image, mask, _ = render_panoptic_scene(seed, size, density)
    return image, mask


def _sample_seed(seed: int, split: str, index: int) -> int:
    """Independent seed per (seed, split, index), so splits never share scenes."""
    return int(np.random.SeedSequence([seed, zlib.crc32(split.encode()), index]).generate_state(1)[0])


class SyntheticStreets(SegmentationDataset):
    """Street scenes rendered on the fly: nothing to download, and any number of samples.

    Without a ``transform``, ``train_transform`` picks random flips (True) or plain normalisation (False).

    Args:
        num_samples: scenes in the split.
        size: (height, width) in pixels of the rendered scenes.
        seed: scenes are a pure function of (seed, split, index); change it for other scenes.
        split: the split's name; splits never share scenes.
        train_transform: with no ``transform``: random flips (True) or plain normalisation (False).
        transform: augmentation pipeline; overrides ``train_transform``.
        density: objects (trees, cars, poles, people) per scene relative to the default.
        **options: passed to ``SegmentationDataset`` (``max_samples``, ``panoptic``, ...).
    """

    classes = SYNTHETIC_CLASSES
    thing_classes = SYNTHETIC_THINGS
    palette = SYNTHETIC_PALETTE

    def __init__(self, num_samples: int, size: Tuple[int, int] = (128, 256), seed: int = 0, split: str = "train",
                 train_transform: bool = False, transform: Optional[SegmentationTransform] = None,
                 density: float = 1.0, **options: Any) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.seed = seed
        self.density = density
        transform = transform or SegmentationTransform(TransformConfig(), train=train_transform)
        super().__init__(num_samples, split, transform, **options)

    def load_item(self, item: int) -> Sample:
        image, mask, instances = render_panoptic_scene(_sample_seed(self.seed, self.split, item), self.size,
                                                       self.density)
        panoptic = mask.astype(np.int32) * LABEL_DIVISOR + instances if self.panoptic is not None else None
        return Sample(image, mask, f"{self.split}_{item:06d}", panoptic)


@register_datamodule("synthetic")
class SyntheticStreetDataModule(SegmentationDataModule):
    """The embedded default dataset: procedural street scenes with train/val/test splits from one seed.

    Args:
        train_samples: scenes in the train split.
        val_samples: scenes in the val split.
        test_samples: scenes in the test split (what ``hyctas test`` and ``predict`` read).
        size: (height, width) in pixels of the rendered scenes.
        seed: scenes are a pure function of (seed, split, index).
        density: trees, cars, poles and people per scene relative to the default; 2 or more gives busy streets
            where instances of one class touch and occlude each other, which panoptic segmentation has to separate.
        **kwargs: loader, ``max_samples``, ``transforms`` and ``panoptic`` options of ``SegmentationDataModule``.
    """

    dataset_type = SyntheticStreets
    splits = ("train", "val", "test")
    default_test_split = "test"

    def __init__(self, train_samples: int = 512, val_samples: int = 64, test_samples: int = 64,
                 size: Tuple[int, int] = (128, 256), seed: int = 0, density: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if density <= 0:
            raise ValueError(f"density must be positive, got {density}")
        self.counts = {"train": train_samples, "val": val_samples, "test": test_samples}

    def make_dataset(self, split: str, **options: Any) -> SyntheticStreets:
        return SyntheticStreets(self.counts[split], self.hparams.size, self.hparams.seed, split,
                                density=self.hparams.density, **options)
