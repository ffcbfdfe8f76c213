"""The Architecture value: the one currency passed between supernet, search, retrain and plots.

An architecture is 1 to 3 branches over a grid of layers x scales (stride 8, 16, 32). Every branch starts at
stride 8 in layer 0 and may go down one scale per layer. Each layer of a branch carries four genes:
``op`` (registered operator name), ``width`` (channel multiplier), ``down`` (the cell halves the resolution) and
``node`` (``pass`` the cell output, ``fuse`` it with the sibling branches, or ``drop`` the cell).
Branches whose genes agree on layers ``0..l`` are one computation up to ``l`` (HRNet-style forking).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Tuple, Union

from hyctas_lightning.fileio import atomic_write_text

SCALES: tuple[int, ...] = (8, 16, 32)
NODES: tuple[str, ...] = ("pass", "fuse", "drop")
OUTPUT_COMBINATIONS: tuple[tuple[int, ...], ...] = ((8,), (16,), (32,), (8, 16), (8, 32), (8, 16, 32))
MAX_BRANCHES = 3
BUILD_SETTINGS: tuple[str, ...] = ("fch", "output_stride", "head", "classifier")  # build settings beside the genes
WIDTH_DECIMALS = 4


class ArchitectureError(ValueError):
    """An architecture (or its JSON) breaks a rule; the message names the field or constraint."""


def channels(stride: int, fch: int, width: float = 1.0) -> int:
    """Channels of a feature map at ``stride`` (8/16/32): ``round(stride * Fch * width)``, at least 1.

    Args:
        stride: the map's stride.
        fch: filter multiplier.
        width: channel multiplier of the cell.
    """
    return max(1, int(round(stride * fch * width)))


def _as_tuple(value: Any, field_name: str) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ArchitectureError(f"{field_name}: expected a list, got {type(value).__name__}")
    return tuple(value)


@dataclass(frozen=True)
class Branch:
    """Per-layer genes of one branch, stored column-wise (one tuple per gene kind).

    Args:
        ops: registered operator name of each layer's cell (``conv``, ``light_conv``, ``mesa``, ...).
        widths: channel multiplier of each cell (rounded to 4 decimals), e.g. 0.5 for half the channel rule.
        downs: whether each cell halves the resolution (0/1 or false/true); at most two per branch.
        nodes: what each layer does with the cell: ``pass`` its output, ``fuse`` it with the sibling branches,
            or ``drop`` the cell.
    """

    ops: tuple[str, ...]
    widths: tuple[float, ...]
    downs: tuple[bool, ...]
    nodes: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(str(o) for o in _as_tuple(self.ops, "ops")))
        widths = _as_tuple(self.widths, "widths")
        try:
            widths = tuple(round(float(w), WIDTH_DECIMALS) for w in widths)
        except (TypeError, ValueError):
            raise ArchitectureError(f"widths: every entry must be a number, got {list(widths)}") from None
        object.__setattr__(self, "widths", widths)
        downs = _as_tuple(self.downs, "downs")
        if any(d not in (0, 1, True, False) for d in downs):
            raise ArchitectureError(f"downs: entries must be 0/1 or true/false, got {list(downs)}")
        object.__setattr__(self, "downs", tuple(bool(d) for d in downs))
        object.__setattr__(self, "nodes", tuple(str(n) for n in _as_tuple(self.nodes, "nodes")))
        n = len(self.ops)
        for name in ("widths", "downs", "nodes"):
            if len(getattr(self, name)) != n:
                raise ArchitectureError(
                    f"{name}: expected {n} entries (one per layer, as in 'ops'), got {len(getattr(self, name))}"
                )

    @property
    def num_layers(self) -> int:
        return len(self.ops)

    def scale_index(self, layer: int) -> int:
        """Scale index (0/1/2 for stride 8/16/32) of the *input* of ``layer``."""
        return sum(self.downs[:layer])

    @property
    def end_scale(self) -> int:
        """Output stride of the branch's last layer."""
        return SCALES[min(sum(self.downs), len(SCALES) - 1)]

    def gene(self, layer: int) -> tuple[str, float, bool, str]:
        return self.ops[layer], self.widths[layer], self.downs[layer], self.nodes[layer]

    def effective_gene(self, layer: int) -> tuple[str, float, bool, str]:
        """The gene as the network sees it: a dropped cell's op and width change nothing."""
        return ("-", 0.0, False, "drop") if self.nodes[layer] == "drop" else self.gene(layer)

    def active(self, layer: int) -> bool:
        """Whether the cell at ``layer`` runs (``drop`` bypasses it)."""
        return self.nodes[layer] != "drop"

    def to_dict(self) -> dict:
        return {"ops": list(self.ops), "widths": list(self.widths), "downs": [int(d) for d in self.downs],
                "nodes": list(self.nodes)}


@dataclass(frozen=True)
class Architecture:
    """A validated, hashable, JSON-serialisable multi-branch network description.

    ``fch`` (filter multiplier), ``output_stride`` (8, or 4 merging the stem's stride-4 feature), ``head`` (the
    aggregation head that brings the branches to one stride-8 map, a name in ``models.HEADS``) and ``classifier``
    (what turns that map into logits, a name in ``models.CLASSIFIERS``) are the build settings a retrained
    network needs; the supernet runs every architecture at output stride 8 with its own head and classifier.

    Args:
        branches: 1 to 3 branches, each with one gene per layer.
        fch: filter multiplier: channels at stride ``s`` are ``round(s * fch * width)`` (12 by default; the
            paper's S/M/L networks differ mainly in it).
        output_stride: 8, or 4 to merge the stem's stride-4 feature before the classifier.
        head: aggregation head, a name in ``models.HEADS`` (``progressive``, ``plain``).
        classifier: classifier, a name in ``models.CLASSIFIERS`` (``linear``, ``attention``).
    """

    branches: tuple[Branch, ...]
    fch: int = 12
    output_stride: int = 8
    head: str = "progressive"
    classifier: str = "linear"
    _groups: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        branches = tuple(b if isinstance(b, Branch) else Branch(**b) for b in _as_tuple(self.branches, "branches"))
        # canonical order: by final stride, so equal networks compare and hash equal
        branches = tuple(sorted(branches, key=lambda b: (b.end_scale, json.dumps(b.to_dict()))))
        object.__setattr__(self, "branches", branches)
        object.__setattr__(self, "_groups", self._compute_groups())

    # ------------------------------------------------------------------ structure
    @property
    def num_branches(self) -> int:
        return len(self.branches)

    @property
    def num_layers(self) -> int:
        return self.branches[0].num_layers if self.branches else 0

    @property
    def end_scales(self) -> tuple[int, ...]:
        return tuple(b.end_scale for b in self.branches)

    def _compute_groups(self) -> tuple[tuple[tuple[int, ...], ...], ...]:
        if not self.branches or len({b.num_layers for b in self.branches}) != 1:
            return ()
        groups = []
        for layer in range(self.num_layers):
            keys: dict[tuple, list[int]] = {}
            for i, b in enumerate(self.branches):
                prefix = tuple(b.effective_gene(j) for j in range(layer + 1))
                keys.setdefault(prefix, []).append(i)
            groups.append(tuple(tuple(v) for v in keys.values()))
        return tuple(groups)

    def groups(self, layer: int) -> tuple[tuple[int, ...], ...]:
        """Branches that are one computation at ``layer`` (identical genes on layers ``0..layer``)."""
        return self._groups[layer]

    # ------------------------------------------------------------------ validation
    def validate(self, memory_limit_gb: Optional[float] = None, batch_size: int = 16,
                 crop: Sequence[int] = (256, 512), known_ops: Optional[Iterable[str]] = None) -> Architecture:
        """Check structure and the four constraints of the paper (section 3.4); return self or raise.

        Args:
            memory_limit_gb: constraint 4: the most estimated training memory in GiB (None skips the check).
            batch_size: training batch size the memory is estimated at.
            crop: training crop (height, width) the memory is estimated at.
            known_ops: op names allowed (None: every registered op).
        """
        if known_ops is None:
            from hyctas_lightning.ops import OPS

            known_ops = OPS.names()
        known_ops = set(known_ops)
        if not self.branches:
            raise ArchitectureError("constraint 1 (at least one branch): 'branches' is empty")
        if len(self.branches) > MAX_BRANCHES:
            raise ArchitectureError(f"branches: at most {MAX_BRANCHES} branches (one per final stride), "
                                    f"got {len(self.branches)}")
        layer_counts = [b.num_layers for b in self.branches]
        if len(set(layer_counts)) != 1:
            raise ArchitectureError(f"branches: every branch needs the same number of layers, got {layer_counts}")
        if self.num_layers < 1:
            raise ArchitectureError("branches[0].ops: a branch needs at least one layer")
        if self.fch < 1:
            raise ArchitectureError(f"fch: the filter multiplier must be a positive integer, got {self.fch}")
        if self.output_stride not in (4, 8):
            raise ArchitectureError(f"output_stride: must be 8 or 4, got {self.output_stride}")
        for i, b in enumerate(self.branches):
            _validate_branch(i, b, known_ops)
        if self.end_scales not in OUTPUT_COMBINATIONS:
            raise ArchitectureError(
                f"branches: final strides {self.end_scales} are not one of the six output combinations "
                f"{[list(c) for c in OUTPUT_COMBINATIONS]}; each branch must end at a different stride and "
                f"several branches must include one that stays at stride 8")
        for layer in range(self.num_layers):
            downs = [g for g in self.groups(layer) if self.branches[g[0]].downs[layer]]
            if len(downs) > 1:
                names = " and ".join(f"branch {g[0]}" for g in downs)
                raise ArchitectureError(
                    f"constraint 2 (branches down-sample at different layers): {names} down-sample at layer "
                    f"{layer} on separate paths; move one of the downs to another layer or share the prefix")
        if memory_limit_gb is not None:
            need = estimate_training_memory_gb(self, batch_size=batch_size, crop=crop)
            if need > memory_limit_gb:
                raise ArchitectureError(
                    f"constraint 4 (training memory): estimated {need:.1f} GiB at batch {batch_size}, crop "
                    f"{crop[0]}x{crop[1]} exceeds the limit of {memory_limit_gb:.1f} GiB")
        return self

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return {**self._settings(), "branches": [b.to_dict() for b in self.branches]}

    def _settings(self) -> dict:
        return {k: getattr(self, k) for k in BUILD_SETTINGS}

    def to_json(self) -> str:
        """Pretty JSON with one line per gene list, so a file reads like a table."""
        lines = ["{", *(f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in self._settings().items()), '  "branches": [']
        for i, b in enumerate(self.to_dict()["branches"]):
            fields = [f'      "{k}": {json.dumps(v)}' for k, v in b.items()]
            lines += ["    {", ",\n".join(fields), "    }" + ("," if i < self.num_branches - 1 else "")]
        return "\n".join(lines + ["  ]", "}"])

    @classmethod
    def from_dict(cls, data: Any, validate: bool = True) -> Architecture:
        if not isinstance(data, dict):
            raise ArchitectureError(f"architecture: expected a JSON object, got {type(data).__name__}")
        unknown = set(data) - {"branches", *BUILD_SETTINGS}
        if unknown:
            raise ArchitectureError(f"{sorted(unknown)[0]}: unknown field; allowed: branches, "
                                    f"{', '.join(BUILD_SETTINGS)}")
        if "branches" not in data:
            raise ArchitectureError("branches: missing (a list of {ops, widths, downs, nodes} objects)")
        branches = _parse_branches(data["branches"])
        for key in ("fch", "output_stride"):
            if key in data and (not isinstance(data[key], int) or isinstance(data[key], bool)):
                raise ArchitectureError(f"{key}: expected an integer, got {data[key]!r}")
        for key in ("head", "classifier"):
            if key in data and not isinstance(data[key], str):
                raise ArchitectureError(f"{key}: expected a registered name (a string), got {data[key]!r}")
        arch = cls(tuple(branches), **{k: data[k] for k in BUILD_SETTINGS if k in data})  # absent: the defaults
        return arch.validate() if validate else arch

    @classmethod
    def from_json(cls, text: str, validate: bool = True) -> Architecture:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ArchitectureError(f"architecture JSON is malformed at line {e.lineno} column {e.colno}: "
                                    f"{e.msg}") from None
        return cls.from_dict(data, validate=validate)

    @classmethod
    def load(cls, path: Union[str, Path]) -> Architecture:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"architecture file not found: {path}")
        try:
            return cls.from_json(path.read_text())
        except ArchitectureError as e:
            raise ArchitectureError(f"{path}: {e}") from None

    def save(self, path: Union[str, Path]) -> Path:
        return atomic_write_text(path, self.to_json() + "\n")

    # ------------------------------------------------------------------ identity
    @property
    def hash(self) -> str:
        """Stable 16-hex-digit identity; genes of dropped cells do not change the network, so they are ignored."""
        canon = {**self._settings(),
                 "branches": [[b.effective_gene(j) for j in range(b.num_layers)] for b in self.branches]}
        return hashlib.sha1(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:16]

    # genes live with the search space that defines their cardinalities
    def to_genes(self, space: SearchSpace) -> list[int]:  # noqa: F821
        return space.encode(self)

    @classmethod
    def from_genes(cls, genes: Sequence[int], space: SearchSpace) -> Architecture:  # noqa: F821
        return space.decode(genes)


def _validate_branch(i: int, b: Branch, known_ops: set) -> None:
    """Checks of branch ``i`` alone: known ops, widths in (0, 1], known nodes, constraint 3, at most two downs."""
    where = f"branches[{i}]"
    for layer, (op, width, down, node) in enumerate(zip(b.ops, b.widths, b.downs, b.nodes)):
        if op not in known_ops:
            raise ArchitectureError(f"{where}.ops[{layer}]: unknown op '{op}'; known ops: {sorted(known_ops)}")
        if not 0.0 < width <= 1.0:
            raise ArchitectureError(f"{where}.widths[{layer}]: width multiplier must be in (0, 1], got {width}")
        if node not in NODES:
            raise ArchitectureError(f"{where}.nodes[{layer}]: unknown node '{node}'; choose one of {NODES}")
        if down and node == "drop":
            raise ArchitectureError(
                f"constraint 3 (no drop where a branch down-samples): {where} layer {layer} has node 'drop' "
                f"and down=1; use 'pass' or 'fuse' there")
    if sum(b.downs) > len(SCALES) - 1:
        raise ArchitectureError(f"{where}.downs: {sum(b.downs)} down-samplings, at most {len(SCALES) - 1} "
                                f"(stride 8 -> 32)")


def _parse_branches(raw: Any) -> list[Branch]:
    """The branches of an architecture's JSON form, each checked for exactly its four gene lists."""
    if not isinstance(raw, list):
        raise ArchitectureError(f"branches: expected a list, got {type(raw).__name__}")
    branches = []
    for i, b in enumerate(raw):
        if not isinstance(b, dict):
            raise ArchitectureError(f"branches[{i}]: expected an object with ops, widths, downs, nodes")
        missing = {"ops", "widths", "downs", "nodes"} - set(b)
        extra = set(b) - {"ops", "widths", "downs", "nodes"}
        if missing or extra:
            name = sorted(missing or extra)[0]
            raise ArchitectureError(f"branches[{i}].{name}: {'missing' if missing else 'unknown field'}")
        try:
            branches.append(Branch(**b))
        except ArchitectureError as e:
            raise ArchitectureError(f"branches[{i}].{e}") from None
    return branches


def estimate_training_memory_gb(arch: Architecture, batch_size: int = 16, crop: Sequence[int] = (256, 512),
                                bytes_per_value: int = 4) -> float:
    """Rough activation memory of one training step: each running cell keeps a few feature maps for backward.

    Counts every distinct computation once (shared prefixes are shared), ``activation_factor`` maps per op
    (from the op registry) plus fusion and head maps. An estimate for constraint 4, not a measurement.

    Args:
        arch: the architecture.
        batch_size: training batch size.
        crop: training crop (height, width) in pixels.
        bytes_per_value: bytes of one activation (4 for fp32, 2 for mixed precision).
    """
    from hyctas_lightning.ops import OPS

    h, w = crop
    values = 0.0
    for layer in range(arch.num_layers):
        for group in arch.groups(layer):
            b = arch.branches[group[0]]
            if not b.active(layer):
                continue
            out_stride = SCALES[b.scale_index(layer) + int(b.downs[layer])]
            c = channels(out_stride, arch.fch, b.widths[layer])
            factor = getattr(OPS.get(b.ops[layer]), "activation_factor", 4.0)
            if b.nodes[layer] == "fuse":
                factor += 4.0
            values += factor * c * (h // out_stride) * (w // out_stride)
    stem = sum(3 * channels(s, arch.fch) * (h // s) * (w // s) for s in (2, 4, 8))
    head = 4 * channels(8, arch.fch) * (h // 8) * (w // 8) * len(arch.branches)
    return (values + stem + head) * batch_size * bytes_per_value / 2**30


def regene(arch: Architecture, new: Callable[[int, int, tuple], Tuple[str, float]]) -> Architecture:
    """``arch`` with the op and width of every computation replaced by ``new(layer, lead branch, gene)``.

    Branches that are one computation at a layer get the same new genes, so shared prefixes stay shared and the
    down-sampling constraint (separate paths never down-sample at the same layer) still holds.

    Args:
        arch: the architecture whose genes are replaced (topology, nodes and build settings stay).
        new: ``(layer, lead branch, gene) -> (op, width)``; ``gene`` is ``Branch.gene(layer)``.
    """
    genes = [list(zip(*(list(b.ops), list(b.widths)))) for b in arch.branches]
    for layer in range(arch.num_layers):
        for group in arch.groups(layer):
            op, width = new(layer, group[0], arch.branches[group[0]].gene(layer))
            for i in group:
                genes[i][layer] = (op, width)
    branches = tuple(Branch(ops=[g[0] for g in genes[i]], widths=[g[1] for g in genes[i]], downs=b.downs,
                            nodes=b.nodes) for i, b in enumerate(arch.branches))
    return dataclasses.replace(arch, branches=branches)  # the build settings (fch, head, ...) stay
