"""A standalone network for one architecture: built fresh for retraining or inherited from a supernet."""
from __future__ import annotations

import dataclasses
import itertools
from typing import Dict, Hashable, List, Optional, Tuple

import torch
from lightning.fabric.utilities.init import _EmptyInit
from torch import nn

from hyctas_lightning.layers import copy_prefix_
from hyctas_lightning.ops import build_op
from hyctas_lightning.search_space import SCALES, Architecture, ArchitectureError, channels

from .blocks import FusionNode, LowLevelDecoder, Stem, combo_key, resize
from .graph import walk
from .heads import build_classifier, build_head, head_widths
from .supernet import SuperNet, cell_key

Built = Tuple[int, str]  # what the builder's walk carries: (channels, name of the module that produced them)
Step = Tuple[str, int, Optional[Tuple[Tuple[int, int], ...]]]  # (cell or fusion key, input, fusion siblings)


class ChildNet(nn.Module):
    """Only the chosen ops at their widths, the fusion nodes in use, one aggregation head and one classifier.

    ``fch``, ``output_stride``, ``head`` and ``classifier`` default to the architecture's own; output stride 4
    merges the stem's stride-4 feature before the classifier. ``stem_head_width`` scales the stem and head
    channels (1: the channel rule, as the release retrains; a supernet's children take the supernet's).

    ``aux_features`` (``{submodule name: channels}``) names the modules whose outputs are the branches' last
    features at stride 16 and 32, where training attaches auxiliary heads (release).

    ``parts`` (``{submodule name: what it was built from}``) holds, for the stem, every cell and fusion node, the
    head and the classifier, the arguments of its constructor: two parts of one class built from the same
    arguments compute the same function, so profiling counts each such part once per input shape
    (:func:`hyctas_lightning.evaluation.profile.count_macs`).

    Args:
        arch: the (validated) architecture to build.
        num_classes: output classes of the classifier.
        fch: filter multiplier (channels at stride ``s`` are ``s * fch`` times the op's width); None keeps the
            architecture's. Raise it for a wider, more accurate and slower network.
        output_stride: 8, or 4 to merge the stem's stride-4 feature before the classifier (sharper boundaries,
            more compute); None keeps the architecture's.
        in_chans: channels of the input images.
        head: aggregation head, a name in ``models.HEADS`` (``progressive``, ``plain``); None keeps the
            architecture's.
        classifier: classifier, a name in ``models.CLASSIFIERS`` (``linear``, ``attention``); None keeps the
            architecture's.
        stem_head_width: factor on the stem and head channels (1: the plain channel rule; children of a
            supernet take the supernet's so its weights fit).
    """

    def __init__(self, arch: Architecture, num_classes: int, fch: Optional[int] = None,
                 output_stride: Optional[int] = None, in_chans: int = 3, head: Optional[str] = None,
                 classifier: Optional[str] = None, stem_head_width: float = 1.0) -> None:
        super().__init__()
        overrides = {"fch": fch, "output_stride": output_stride, "head": head, "classifier": classifier}
        arch = dataclasses.replace(arch, **{k: v for k, v in overrides.items() if v is not None})
        self.arch = arch.validate()
        self.num_classes = num_classes
        self.stem_head_width = stem_head_width
        self.stem = Stem(arch.fch, in_chans, stem_head_width)
        self.parts: Dict[str, Hashable] = {"stem": (arch.fch, in_chans, stem_head_width)}
        self.cells = nn.ModuleDict()
        self.fuses = nn.ModuleDict()
        built = walk(arch, (self.stem.out_channels[8], "stem"), self._build_cell, self._build_fuse)
        branch_channels = {end: {s: c for s, (c, _) in f.items()} for end, f in built.items()}
        widths = head_widths(arch.fch, stem_head_width)
        self.head = build_head(arch.head, arch.end_scales, branch_channels, widths)
        self.parts["head"] = (arch.head, arch.end_scales, tuple((end, tuple(f.items()))
                                                                 for end, f in branch_channels.items()),
                              tuple(widths.items()))
        c_head = self.head.out_channels
        self.decoder = LowLevelDecoder(self.stem.out_channels[4], c_head) if arch.output_stride == 4 else None
        self.num_features = c_head  # channels of ``forward_features``, what the classifier sees
        self.parts["classifier"] = args = (arch.classifier, c_head, num_classes, arch.output_stride)
        self.classifier = build_classifier(*args)
        self.aux_features: Dict[str, int] = {name: c for f in built.values() for s, (c, name) in f.items() if s > 8}
        self._steps, self._features = self._record()

    def _record(self) -> Tuple[Tuple[Step, ...], Dict[int, Dict[int, int]]]:
        """The walk over the architecture, taken once: the modules to run in order, each with the index of its input
        among the values computed so far (0: the stem's stride-8 map) and, for a fusion node, its siblings' (index,
        scale); and the index of each branch feature the head reads. ``forward_features`` replays it instead of
        re-deriving the genes, groups and siblings of every layer on every pass."""
        steps: List[Step] = []

        def record(layer: int, branch: int, src: int, siblings: Optional[list] = None) -> int:
            steps.append((f"L{layer}_B{branch}", src, tuple(siblings) if siblings is not None else None))
            return len(steps)

        features = walk(self.arch, 0, lambda layer, b, src, s: record(layer, b, src),
                        lambda layer, b, src, s, sib: record(layer, b, src, sib))
        return tuple(steps), features

    # building walks the same graph with (channels, producing module) instead of tensors
    def _build_cell(self, layer: int, branch: int, value: Built, scale: int) -> Built:
        op, width, down, _ = self.arch.branches[branch].gene(layer)
        c_out = channels(SCALES[scale + down], self.arch.fch, width)
        key = f"L{layer}_B{branch}"
        args = (op, value[0], c_out, 2 if down else 1)
        self.cells[key] = build_op(*args)
        self.parts[f"cells.{key}"] = args
        return c_out, f"cells.{key}"

    def _build_fuse(self, layer: int, branch: int, value: Built, scale: int,
                    siblings: list[tuple[Built, int]]) -> Built:
        sources: dict[int, int] = {}
        for (c_sib, _), t in siblings:
            sources[t] = max(sources.get(t, 0), c_sib)
        key = f"L{layer}_B{branch}"
        self.fuses[key] = FusionNode(scale, value[0], sources)
        self.parts[f"fuses.{key}"] = (scale, value[0], tuple(sorted(sources.items())))
        return value[0], f"fuses.{key}"

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The feature map the classifier sees: the aggregation head's stride-8 map (merged with the stem's
        stride-4 feature at output stride 4), ``(N, C, H / stride, W / stride)``."""
        x4, x8 = self.stem(images)
        values = [x8]
        for key, src, siblings in self._steps:
            if siblings is None:
                values.append(self.cells[key](values[src]))
            else:
                values.append(self.fuses[key](values[src], [(values[i], s) for i, s in siblings]))
        feature = self.head({end: {s: values[i] for s, i in f.items()} for end, f in self._features.items()})
        return self.decoder(feature, x4) if self.decoder is not None else feature

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return resize(self.classifier(self.forward_features(images)), images.shape[-2:])

    @classmethod
    def empty(cls, arch: Architecture, num_classes: int, device: torch.device | str = "meta",
              **kwargs) -> ChildNet:
        """A ChildNet whose weights and statistics are left uninitialised on ``device``: for one that is about to be
        overwritten (:meth:`from_supernet`) or only counted (the meta device, the default). Building on the meta
        device without the initialisers, then allocating, skips the random initialisation a fresh network spends
        most of its construction on.

        Args:
            arch: the (validated) architecture to build.
            num_classes: output classes of the classifier.
            device: where the (uninitialised) tensors are allocated.
            **kwargs: the other arguments of the constructor (``fch``, ``output_stride``, ...).
        """
        with torch.device("meta"), _EmptyInit():
            net = cls(arch, num_classes, **kwargs)
        return net.to_empty(device=device)

    @torch.no_grad()
    def placeholder_(self) -> ChildNet:
        """Fill every tensor of the state with a constant in place (zero weights, biases and statistics, unit
        BatchNorm variance): a child of the right structure whose values are finite through any cast or fold, for
        timing alone where its weights would be copied for nothing. Uninitialised memory could hold NaN, inf or
        negative variances, and folding divides by the variance's square root; with these constants every
        activation is 0, in any dtype. Returns the child."""
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            tensor.zero_()
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_var is not None:
                module.running_var.fill_(1.0)
        return self

    @classmethod
    def from_supernet(cls, supernet: SuperNet, arch: Architecture, weights: bool = True) -> ChildNet:
        """Child of ``arch`` with the supernet's weights (and BN statistics) copied in, on the supernet's device;
        in eval mode its output equals ``supernet(images, arch)`` to float tolerance. It is allocated there
        uninitialised (:meth:`empty`): every tensor of its state is copied from the supernet.

        Args:
            supernet: the trained supernet.
            arch: a member of the supernet's space, at output stride 8.
            weights: copy the supernet's weights; False fills constants instead (:meth:`placeholder_`): the same
                modules and shapes for a measurement that does not depend on values (latency on a GPU).
        """
        if arch.output_stride != 8:
            raise ArchitectureError("output_stride: the supernet runs at output stride 8; inherit with "
                                    "output_stride=8 and retrain for 4")
        supernet.check(arch)
        device = next(supernet.parameters()).device
        child = cls.empty(arch, supernet.num_classes, device, fch=supernet.fch, output_stride=8,
                          stem_head_width=supernet.space.stem_head_width)
        if not weights:
            return child.placeholder_()
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
