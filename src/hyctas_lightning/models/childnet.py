"""A standalone network for one architecture: built fresh for retraining or inherited from a supernet."""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import nn

from hyctas_lightning.layers import copy_prefix_
from hyctas_lightning.ops import build_op
from hyctas_lightning.search_space import SCALES, Architecture, ArchitectureError, channels

from .blocks import AggregationHead, FusionNode, LowLevelDecoder, Stem, combo_key, resize
from .graph import walk
from .supernet import SuperNet, cell_key


class ChildNet(nn.Module):
    """Only the chosen ops at their widths, the fusion nodes in use and one head (no unused modules).

    ``fch`` and ``output_stride`` default to the architecture's own; output stride 4 merges the stem's
    stride-4 feature before the classifier.
    """

    def __init__(self, arch: Architecture, num_classes: int, fch: Optional[int] = None,
                 output_stride: Optional[int] = None, in_chans: int = 3) -> None:
        super().__init__()
        arch = dataclasses.replace(arch, fch=fch or arch.fch, output_stride=output_stride or arch.output_stride)
        self.arch = arch.validate()
        self.num_classes = num_classes
        self.stem = Stem(arch.fch, in_chans)
        self.cells = nn.ModuleDict()
        self.fuses = nn.ModuleDict()
        final = walk(arch, self.stem.out_channels[8], self._build_cell, self._build_fuse)
        c_head = channels(8, arch.fch)
        self.head = AggregationHead(arch.end_scales, final, c_head)
        self.decoder = LowLevelDecoder(self.stem.out_channels[4], c_head) if arch.output_stride == 4 else None
        self.num_features = c_head  # channels of ``forward_features``, what the classifier sees
        self.classifier = nn.Conv2d(c_head, num_classes, 1)

    # building walks the same graph with channel counts instead of tensors
    def _build_cell(self, layer: int, branch: int, c_in: int, scale: int) -> int:
        op, width, down, _ = self.arch.branches[branch].gene(layer)
        c_out = channels(SCALES[scale + down], self.arch.fch, width)
        self.cells[f"L{layer}_B{branch}"] = build_op(op, c_in, c_out, 2 if down else 1)
        return c_out

    def _build_fuse(self, layer: int, branch: int, c: int, scale: int, siblings: list[tuple[int, int]]) -> int:
        sources: dict[int, int] = {}
        for c_sib, t in siblings:
            sources[t] = max(sources.get(t, 0), c_sib)
        self.fuses[f"L{layer}_B{branch}"] = FusionNode(scale, c, sources)
        return c

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The feature map the classifier sees: ``num_features`` channels at the output stride (8 or 4)."""
        x4, x8 = self.stem(images)
        feats = walk(self.arch, x8, lambda layer, b, x, s: self.cells[f"L{layer}_B{b}"](x),
                     lambda layer, b, x, s, sib: self.fuses[f"L{layer}_B{b}"](x, sib))
        feature = self.head(feats, x8.shape[-2:])
        if self.decoder is not None:
            feature = self.decoder(feature, x4)
        return feature

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return resize(self.classifier(self.forward_features(images)), images.shape[-2:])

    @classmethod
    def from_supernet(cls, supernet: SuperNet, arch: Architecture) -> ChildNet:
        """Child of ``arch`` with the supernet's weights (and BN statistics) copied in, on the supernet's device;
        in eval mode its output equals ``supernet(images, arch)`` to float tolerance."""
        if arch.output_stride != 8:
            raise ArchitectureError("output_stride: the supernet runs at output stride 8; inherit with "
                                    "output_stride=8 and retrain for 4")
        supernet.check(arch)
        device = next(supernet.parameters()).device
        child = cls(arch, supernet.num_classes, fch=supernet.fch, output_stride=8).to(device)
        copy_prefix_(child.stem, supernet.stem)
        for key, cell in child.cells.items():
            layer, branch = (int(p[1:]) for p in key.split("_"))
            b = arch.branches[branch]
            copy_prefix_(cell, supernet.cells[cell_key(layer, b.scale_index(layer), b.downs[layer])][b.ops[layer]])
        for key, node in child.fuses.items():
            layer, branch = (int(p[1:]) for p in key.split("_"))
            b = arch.branches[branch]
            node.inherit_(supernet.fuses[f"L{layer}_S{b.scale_index(layer) + int(b.downs[layer])}"])
        key = combo_key(arch.end_scales)
        copy_prefix_(child.head, supernet.heads[key])
        copy_prefix_(child.classifier, supernet.classifiers[key])
        return child
