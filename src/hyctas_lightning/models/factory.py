"""The one front door for networks, timm-style: ``create_network(name_or_arch, num_classes=...)`` and
``list_networks()``.

One registry holds every name: the HyCTAS presets shipped with the package (``hyctas_s``, ``hyctas_m``,
``hyctas_l``, ...), the torchvision baselines and the networks a user registers with ``@register_network``.
An architecture (a JSON file, its dict form or an ``Architecture``) builds its ``ChildNet``. A retrain
checkpoint either rebuilds its own network (``create_network(checkpoint=path)``) or loads its weights into the
named one.
"""
from __future__ import annotations

import fnmatch
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

from torch import nn

from hyctas_lightning.checkpoints import (
    SEGMENTATION_KIND,
    SUPERNET_KIND,
    CheckpointError,
    expand_state_dict,
    read_checkpoint,
)
from hyctas_lightning.errors import ClassCountError
from hyctas_lightning.registry import Registry
from hyctas_lightning.search_space import BUILD_SETTINGS, Architecture, ArchitectureError, SearchSpace

from .childnet import ChildNet
from .supernet import SuperNet
from .zoo import zoo_checkpoint, zoo_weights

NETWORKS: Registry[Callable[..., nn.Module]] = Registry("segmentation network")
ArchSource = Union[str, Path, Dict[str, Any], Architecture]
PRESETS = resources.files(__package__) / "presets"
DEFAULT_CLASSES = 19  # Cityscapes', the paper's data
ZOO_METADATA = ("classes", "palette", "ignore_index", "weights")  # what pretrained_cfg carries of a zoo checkpoint


def register_network(name: str, *, overwrite: bool = False) -> Callable[[Callable[..., nn.Module]],
                                                                        Callable[..., nn.Module]]:
    """Register a factory ``fn(num_classes: int, **kwargs) -> nn.Module`` under ``name``.

    The module's ``forward(images)`` must return logits at the input resolution (the deployable path). It may
    declare ``aux_features = {submodule name: channels}``: training attaches an auxiliary head to those outputs.

    Args:
        name: the name configs and ``create_network`` use.
        overwrite: replace an existing registration instead of refusing it.
    """
    return NETWORKS.register(name, overwrite=overwrite)


def preset_names() -> List[str]:
    """Names of the architecture presets shipped as package data."""
    return sorted(Path(str(p)).stem for p in PRESETS.iterdir() if str(p).endswith(".json"))


def load_architecture(source: ArchSource) -> Architecture:
    """An Architecture from itself, its dict form (as checkpoints store it), a preset name or a JSON file."""
    if isinstance(source, Architecture):
        return source
    if isinstance(source, dict):
        return Architecture.from_dict(source)
    if isinstance(source, str) and source in preset_names():
        try:
            return Architecture.from_json((PRESETS / f"{source}.json").read_text())
        except ArchitectureError as e:
            raise ArchitectureError(f"preset {source}: {e}") from None
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"architecture not found: '{source}' is neither a JSON file nor a preset "
                                f"({', '.join(preset_names())})")
    return Architecture.load(path)


def _preset(name: str) -> Callable[..., nn.Module]:
    def build(num_classes: int, **overrides: Any) -> nn.Module:
        return ChildNet(load_architecture(name), num_classes, **overrides)

    build.__doc__ = f"The {name} preset architecture (package data ``presets/{name}.json``) as a ChildNet."
    return build


for _name in preset_names():
    register_network(_name)(_preset(_name))


def list_networks(pattern: str = "*", pretrained: bool = False) -> List[str]:
    """Network names matching a shell-style ``pattern`` (``"hyctas_*"``), sorted: the registered ones and the
    model zoo's ``NAME.TAG`` networks (``models.zoo``); with ``pretrained``, only those that have weights.

    Args:
        pattern: shell-style pattern of the names.
        pretrained: only the model zoo's networks (``create_network(name, pretrained=True)`` loads their weights).
    """
    names = set(zoo_weights()) | (set() if pretrained else set(NETWORKS.names()))
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def create_network(name_or_arch: Optional[ArchSource] = None, num_classes: Optional[int] = None,
                   checkpoint: Optional[Union[str, Path]] = None, pretrained: bool = False,
                   **overrides: Any) -> nn.Module:
    """Build a segmentation network (images -> logits at the input resolution).

    Args:
        name_or_arch: a name of ``list_networks()`` (presets, baselines, plugins, the model zoo's ``NAME.TAG``), an
            architecture JSON file, its dict form or an ``Architecture``. None rebuilds the network a retrain
            ``checkpoint`` holds.
        num_classes: output classes (None: a zoo network's own, else 19).
        checkpoint: a retrain checkpoint of ``hyctas fit`` (or a model-zoo file) whose weights are loaded.
        pretrained: load the model zoo's weights of ``name_or_arch`` (``NAME.TAG``, or ``NAME`` for its first
            tag); the network then carries the checkpoint's metadata (classes, palette, ...) as
            ``pretrained_cfg``.
        **overrides: build settings of architecture networks, e.g. ``fch=16, output_stride=4``,
            ``head="plain"``, ``classifier="attention"``.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if pretrained:
        return _pretrained(name_or_arch, num_classes, checkpoint, overrides)
    if name_or_arch is None:
        if checkpoint is None:
            raise ValueError("create_network needs a network name, an architecture or a checkpoint")
        net, _ = load_network(checkpoint)
        return net
    net = _build(name_or_arch, num_classes, overrides)
    if checkpoint is not None:
        load_network_weights(net, checkpoint)
    return net


def _pretrained(name: Any, num_classes: Optional[int], checkpoint: Any, overrides: Dict[str, Any]) -> nn.Module:
    """A zoo network with its weights, its checkpoint's metadata as ``pretrained_cfg``."""
    path = zoo_checkpoint(name) if isinstance(name, str) and checkpoint is None and not overrides else None
    if path is None:
        raise ValueError(f"pretrained=True loads the model zoo's weights: name one of "
                         f"{', '.join(list_networks(pretrained=True)) or 'none (no zoo folder found)'} without a "
                         f"checkpoint or build settings (got {name!r}); other weights load with checkpoint=")
    net, meta = load_network(path)
    trained = meta["network"]["num_classes"]
    if num_classes is not None and num_classes != trained:
        raise ClassCountError(f"{name} was trained for {trained} classes, not {num_classes}: leave num_classes "
                              f"out, or build it without pretrained weights")
    net.pretrained_cfg = {"name": name, "file": str(path), **{k: meta.get(k) for k in ZOO_METADATA}}
    return net


def _build(source: ArchSource, num_classes: Optional[int], overrides: Dict[str, Any]) -> nn.Module:
    if isinstance(source, str) and source in NETWORKS:
        try:
            return NETWORKS.get(source)(num_classes or DEFAULT_CLASSES, **overrides)
        except TypeError as e:
            raise ValueError(f"network '{source}' does not take {sorted(overrides)} ({e}); these settings size "
                             f"architecture networks only") from None
    if isinstance(source, str) and not source.endswith(".json") and not Path(source).exists():
        zoo = zoo_checkpoint(source)
        if zoo is not None:  # the zoo network's architecture, untrained
            spec = with_legacy_heads(read_checkpoint(zoo, SEGMENTATION_KIND)["hyctas"]["network"])
            return _from_spec(spec, num_classes, overrides)
        raise ValueError(f"unknown network '{source}'; registered: {', '.join(list_networks())} (or give an "
                         f"architecture JSON file; a network from your own module needs that module imported "
                         f"first, e.g. with plugins)")
    return ChildNet(load_architecture(source), num_classes or DEFAULT_CLASSES, **overrides)


def _from_spec(spec: Dict[str, Any], num_classes: Optional[int] = None,
               overrides: Optional[Dict[str, Any]] = None) -> nn.Module:
    """The network a checkpoint's ``network`` entry describes, its build settings under ``overrides``."""
    settings = {**{k: spec[k] for k in BUILD_SETTINGS if spec.get(k)}, **(overrides or {})}
    return _build(spec.get("arch") or spec.get("network"), num_classes or spec["num_classes"], settings)


def load_network(checkpoint: Union[str, Path]) -> tuple[nn.Module, Dict[str, Any]]:
    """The trained network of a retrain checkpoint (eval mode, on the CPU, no auxiliary heads) and its metadata
    (``network`` build arguments, ``name``, ``classes``, ``palette``)."""
    state, meta = _network_state(checkpoint)
    spec = with_legacy_heads(meta["network"])
    net = _from_spec(spec)
    _load_state(net, state, checkpoint)
    return net.eval(), {**meta, "network": spec}


def with_legacy_heads(spec: Dict[str, Any]) -> Dict[str, Any]:
    """A checkpoint's ``network`` entry, read as written: checkpoints from before heads were selectable store
    architectures without a ``head``, and their networks have the plain aggregation head and linear classifier."""
    arch = spec.get("arch")
    if isinstance(arch, dict) and "head" not in arch:
        return {**spec, "arch": {**arch, "head": "plain", "classifier": "linear"}}
    return spec


def network_heads(spec: Dict[str, Any]) -> tuple[str, str]:
    """(head, classifier) of the architecture network a checkpoint's ``network`` entry rebuilds."""
    spec = with_legacy_heads(spec)
    arch = Architecture.from_dict(spec["arch"], validate=False)
    return spec.get("head") or arch.head, spec.get("classifier") or arch.classifier


def load_network_weights(net: nn.Module, checkpoint: Union[str, Path]) -> None:
    """Load a retrain checkpoint's network weights into ``net`` (which must be the same network)."""
    state, _ = _network_state(checkpoint)
    _load_state(net, state, checkpoint)


def require_named_plugins(plugins: Any, where: Union[str, Path]) -> None:
    """A checkpoint may list the plugin modules it was trained with, but importing a module runs its code: only
    modules the user has imported (``--plugins``, a config's ``plugins:``, ``import_plugins``) are accepted."""
    missing = [str(m) for m in plugins or () if str(m) not in sys.modules]
    if missing:
        raise CheckpointError(f"{where} lists plugin modules {missing} that are not imported; importing a module "
                              f"runs its code, so hyctas imports only the modules you name: if you trust them, "
                              f"name them (--plugins {' '.join(missing)}, or import_plugins({missing}) in Python)")


def _network_state(checkpoint: Union[str, Path]) -> tuple[Dict[str, Any], Dict[str, Any]]:
    ckpt = read_checkpoint(checkpoint, SEGMENTATION_KIND)
    require_named_plugins(ckpt["hyctas"].get("network", {}).get("plugins"), checkpoint)
    state = expand_state_dict(ckpt["state_dict"])
    return {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}, ckpt["hyctas"]


def _load_state(net: nn.Module, state: Dict[str, Any], where: Union[str, Path]) -> None:
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        first = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise CheckpointError(f"{where}: its weights do not fit this network ({first}); build the network the "
                              f"checkpoint was trained with, e.g. create_network(checkpoint=...)") from None


def load_supernet(checkpoint: Union[str, Path]) -> tuple[SuperNet, Dict[str, Any]]:
    """The trained SuperNet of a supernet checkpoint (eval mode, on the CPU) and its metadata (``space``,
    ``data``, ``num_classes``, ``sampler``)."""
    ckpt = read_checkpoint(checkpoint, SUPERNET_KIND)
    meta = ckpt["hyctas"]
    require_named_plugins(meta["space"].get("plugins"), checkpoint)  # SearchSpace imports the plugins it lists
    supernet = SuperNet(SearchSpace.from_dict(meta["space"]), meta["num_classes"])
    prefix = "supernet."
    _load_state(supernet, {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)},
                checkpoint)
    return supernet.eval(), meta
