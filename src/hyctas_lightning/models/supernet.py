"""The weight-sharing supernet (paper section 3.2, SPEC section 2): runs any architecture of its space."""
from __future__ import annotations

import torch
from torch import nn

from hyctas_lightning.ops import build_op
from hyctas_lightning.search_space import (
    OUTPUT_COMBINATIONS,
    SCALES,
    Architecture,
    ArchitectureError,
    SearchSpace,
    channels,
)

from .blocks import FusionNode, Stem, combo_key, resize
from .graph import walk
from .heads import build_classifier, build_head, head_widths


def cell_key(layer: int, scale: int, down: bool) -> str:
    """Name of the supernet cell at ``layer``, scale index ``scale`` (0: stride 8) and ``down`` (stride 2 out).

    Args:
        layer: layer index.
        scale: scale index the cell reads from (0, 1, 2 for stride 8, 16, 32).
        down: whether the cell halves the resolution.
    """
    return f"L{layer}_S{scale}_D{int(down)}"


def share_branch_refinements(heads) -> None:
    """Tie the per-branch modules of heads that expose them (``head.branches``, keyed by final stride, built
    from that stride alone): every head then uses the first head's module for a branch ending at that stride.

    Args:
        heads: aggregation heads of the output combinations; heads without ``branches`` are left alone.
    """
    shared: dict[str, nn.Module] = {}
    for head in heads:
        branches = getattr(head, "branches", None)
        if isinstance(branches, nn.ModuleDict):
            for stride in list(branches.keys()):
                branches[stride] = shared.setdefault(stride, branches[stride])


class SuperNet(nn.Module):
    """Per (layer, scale, down) a cell holding every op of the space at full width, per (layer, scale) a
    fusion node with one slot per source scale, and one aggregation head + classifier per output combination
    (the space's ``head`` and ``classifier``; stem and head channels scaled by its ``stem_head_width``).

    ``forward(images, arch)`` runs the sub-network ``arch`` (sliced to its widths) and returns logits at the
    input resolution. BatchNorm statistics are shared across widths; recalibrate them per sub-network before
    evaluating it (see the search stage).

    Args:
        space: the search space whose every member the supernet can run (its ``fch``, ops, ``stem_head_width``,
            ``head`` and ``classifier`` decide the modules built).
        num_classes: output classes of every classifier.
        in_chans: channels of the input images.
    """

    def __init__(self, space: SearchSpace, num_classes: int, in_chans: int = 3) -> None:
        super().__init__()
        self.space = space
        self.num_classes = num_classes
        self.fch = fch = space.fch
        full = [channels(s, fch) for s in SCALES]
        self.stem = Stem(fch, in_chans, space.stem_head_width)
        c_stem = self.stem.out_channels[8]
        self.cells = nn.ModuleDict()
        self.fuses = nn.ModuleDict()
        for layer in range(space.layers):
            for s in range(min(layer, 2) + 1):
                c_in = c_stem if layer == 0 else full[s]
                for down in ((False, True) if s < 2 else (False,)):
                    self.cells[cell_key(layer, s, down)] = nn.ModuleDict(
                        {op: build_op(op, c_in, full[s + down], 2 if down else 1) for op in space.ops})
            if "fuse" in space.nodes:
                reach = min(layer + 1, 2)
                for s in range(reach + 1):
                    self.fuses[f"L{layer}_S{s}"] = FusionNode(s, full[s], {t: full[t] for t in range(reach + 1)})
        # a branch's skip feature at stride 8 may be the stem's output (a branch leaving stride 8 at once)
        slots = {8: max(full[0], c_stem), 16: full[1], 32: full[2]}
        width = head_widths(fch, space.stem_head_width)
        self.heads = nn.ModuleDict({
            combo_key(c): build_head(space.head, c, {e: {s: slots[s] for s in SCALES if s <= e} for e in c}, width)
            for c in OUTPUT_COMBINATIONS})
        if space.head_sharing == "branch":
            share_branch_refinements(self.heads.values())
        self.classifiers = nn.ModuleDict({key: build_classifier(space.classifier, head.out_channels, num_classes)
                                          for key, head in self.heads.items()})
        self._checked: set[str] = set()
        self.memory_format = torch.contiguous_format

    def set_channels_last(self, enabled: bool = True) -> SuperNet:
        """Hold weights and run inputs in channels-last memory format (faster on GPUs) or back in NCHW; the
        numbers are the same up to the convolution algorithms' rounding.

        Args:
            enabled: channels-last (True) or contiguous NCHW (False).
        """
        self.memory_format = torch.channels_last if enabled else torch.contiguous_format
        return self.to(memory_format=self.memory_format)

    def check(self, arch: Architecture) -> None:
        """Raise if ``arch`` is not a member of this supernet's space (cached per architecture hash)."""
        if arch.hash in self._checked:
            return
        try:
            self.space.validate(arch)
        except ArchitectureError as e:
            raise ArchitectureError(f"architecture does not fit this supernet: {e}") from None
        self._checked.add(arch.hash)

    def _run_cell(self, arch: Architecture, layer: int, branch: int, x: torch.Tensor, scale: int) -> torch.Tensor:
        op, width, down, _ = arch.branches[branch].gene(layer)
        c_out = channels(SCALES[scale + down], self.fch, width)
        return self.cells[cell_key(layer, scale, down)][op](x, c_out)

    def _run_fuse(self, layer: int, branch: int, x: torch.Tensor, scale: int, siblings) -> torch.Tensor:
        return self.fuses[f"L{layer}_S{scale}"](x, siblings)

    def forward(self, images: torch.Tensor, arch: Architecture) -> torch.Tensor:
        self.check(arch)
        _, x8 = self.stem(images.contiguous(memory_format=self.memory_format))
        feats = walk(arch, x8, lambda *a: self._run_cell(arch, *a), self._run_fuse)
        key = combo_key(arch.end_scales)
        return resize(self.classifiers[key](self.heads[key](feats)), images.shape[-2:])
