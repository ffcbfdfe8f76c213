"""Your own data: images and masks in folders, one pair of folders per split or one for all with a list file per
split; the classes and their colours inline or from a YAML/JSON file; masks that hold class ids (single-channel or
palette-indexed PNGs, raw ids mapped by ``label_map``) or class colours (RGB PNGs, decoded through the palette)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from .base import FileDataModule, FilePair, PairedFilesDataset, Sample
from .files import (
    DatasetError,
    MissingSplitError,
    check_same_size,
    read_image,
    read_label,
    require_dir,
    require_items,
    with_layout,
)
from .labels import IGNORE_INDEX, Colour, ColourMap, LabelMap, generated_palette
from .registry import register_datamodule
from .transforms import TransformConfig

MASK_FORMATS = ("index", "rgb")
RGB_MASK = "an RGB PNG of class colours (or set mask_format: index for masks that hold class ids)"

FOLDER_LAYOUT = """\
ROOT/
├── classes.yaml          class names in id order (a list), or {classes: [...], palette: [[r, g, b], ...]}
├── images/SPLIT/NAME.jpg
└── masks/SPLIT/NAME.png  class ids (mask_format: index) or class colours (mask_format: rgb)
SPLIT: train, val and (optional) test; NAME may include sub-folders. image_dir, mask_dir, the suffixes and
split_list (one NAME a line per split, e.g. splits/{split}.txt) change the layout.
"""


def _placeholder_ok(template: str) -> bool:
    """Whether ``template`` formats with ``split`` alone (no other braces)."""
    try:
        template.format(split="train")
    except (KeyError, IndexError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class FolderLayout:
    """Where the files of a folder dataset are, relative to its root; ``{split}`` in a path is the split's name.

    Args:
        image_dir: folder of a split's images.
        mask_dir: folder of a split's masks.
        image_suffix: what every image file name ends with (``NAME + image_suffix``).
        mask_suffix: what every mask file name ends with (``NAME + mask_suffix``).
        split_list: a split's list file of NAMEs, one a line; None takes every image under ``image_dir``.
    """

    image_dir: str = "images/{split}"
    mask_dir: str = "masks/{split}"
    image_suffix: str = ".jpg"
    mask_suffix: str = ".png"
    split_list: Optional[str] = None

    def __post_init__(self) -> None:
        for field in ("image_dir", "mask_dir", "split_list"):
            value = getattr(self, field)
            if value is not None and not _placeholder_ok(value):
                raise ValueError(f"{field}: '{value}' may hold {{split}} and no other braces")
        if self.split_list is None and not all("{split}" in d for d in (self.image_dir, self.mask_dir)):
            raise ValueError(f"image_dir '{self.image_dir}' and mask_dir '{self.mask_dir}' must both contain {{split}} "
                             "(e.g. images/{split}), or split_list must name each split's list file "
                             "(e.g. splits/{split}.txt)")
        if not (self.image_suffix and self.mask_suffix):
            raise ValueError("image_suffix and mask_suffix must not be empty (e.g. .jpg and .png)")
        if (self.image_dir, self.image_suffix) == (self.mask_dir, self.mask_suffix):
            raise ValueError(f"images and masks are both '{self.image_dir}/NAME{self.image_suffix}': give masks "
                             "another mask_dir or mask_suffix")

    def describe(self) -> str:
        """The expected tree with this layout's folders and suffixes, for error messages."""
        lines = ["ROOT/", f"├── {self.image_dir}/NAME{self.image_suffix}",
                 f"{'├' if self.split_list else '└'}── {self.mask_dir}/NAME{self.mask_suffix}"
                 "   class ids (mask_format: index) or colours (rgb)"]
        if self.split_list:
            lines.append(f"└── {self.split_list}   one NAME a line")
        return "\n".join(lines + ["{split}: train, val and (optional) test; NAME may include sub-folders"]) + "\n"

    def pairs(self, root: Path, split: str, labels: Union[LabelMap, ColourMap]) -> List[FilePair]:
        """Every image/mask pair of ``split``: the listed NAMEs, or every NAME with an image or a mask (so a mask
        without its image is a sample that reports it, not a file quietly left out).

        Args:
            root: the dataset folder.
            split: the split's name.
            labels: decodes the split's masks.
        """
        images, masks = (root / d.format(split=split) for d in (self.image_dir, self.mask_dir))
        if self.split_list is not None:
            listing = root / self.split_list.format(split=split)
            names, where = self._listed(listing, root), f"list {listing}"
        else:
            require_dir(images, f"{split} images", root, self.describe())
            require_dir(masks, f"{split} masks", root, self.describe())
            shared = images == masks  # one folder: a file belongs to the longer suffix it ends with
            names = sorted(set(_names(images, self.image_suffix, self.mask_suffix if shared else None))
                           | set(_names(masks, self.mask_suffix, self.image_suffix if shared else None)))
            where = f"*{self.image_suffix} under {images}"
        pairs = [FilePair(images / f"{name}{self.image_suffix}", masks / f"{name}{self.mask_suffix}", labels, name)
                 for name in names]
        return require_items(pairs, f"{split} split ({where})", root, self.describe())

    def _listed(self, listing: Path, root: Path) -> List[str]:
        if not listing.is_file():
            raise MissingSplitError(with_layout(f"split list not found: {listing}", root, self.describe()))
        names, seen = [], {}
        for number, line in enumerate(listing.read_text().splitlines(), 1):
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            if name in seen:
                raise DatasetError(f"{listing}: line {number} repeats '{name}' (first on line {seen[name]}); "
                                   "list each sample once")
            seen[name] = number
            names.append(name)
        return names


def _names(folder: Path, suffix: str, other: Optional[str] = None) -> List[str]:
    """NAMEs of the files under ``folder`` (sub-folders included) whose names end with ``suffix``, less those that
    end with ``other`` where it is the longer suffix (``.png`` images beside ``_mask.png`` masks)."""
    longer = other if other is not None and len(other) > len(suffix) and other.endswith(suffix) else None
    return [path.relative_to(folder).as_posix()[: -len(suffix)] for path in folder.rglob(f"*{suffix}")
            if path.is_file() and not (longer and path.name.endswith(longer))]


def _read_file(path: Path, what: str) -> Any:
    """A YAML or JSON file's content (JSON by the ``.json`` suffix), or an error naming the file."""
    if not path.is_file():
        raise DatasetError(f"{what} file not found: {path} (a relative path is read from the dataset root)")
    try:
        text = path.read_text()
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot parse {path}: {' '.join(str(error).split())}") from None


def _colours(values: Any, where: str, error: type = ValueError) -> List[Colour]:
    """``values`` as a list of (r, g, b) tuples of ints in 0..255, or an error naming ``where``."""
    if not isinstance(values, (list, tuple)):
        raise error(f"{where}: expected a list of [r, g, b] colours, got {values!r}")
    out = []
    for k, value in enumerate(values):
        if not (isinstance(value, (list, tuple)) and len(value) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)):
            raise error(f"{where}: entry {k} is {value!r}; each colour is [r, g, b], three integers 0..255")
        out.append((value[0], value[1], value[2]))
    return out


def _class_file(path: Path) -> Tuple[Any, Any]:
    """(classes, palette or None) of a classes file: a list of names, or a mapping with ``classes`` and
    optionally ``palette``."""
    content = _read_file(path, "classes")
    if isinstance(content, dict) and "classes" in content:
        unknown = sorted(set(content) - {"classes", "palette"})
        if unknown:
            raise DatasetError(f"{path}: unknown keys {unknown}; a classes file holds 'classes' and 'palette'")
        return content["classes"], content.get("palette")
    if isinstance(content, list):
        return content, None
    raise DatasetError(f"{path}: expected a list of class names, or a mapping with 'classes' (and 'palette'), got "
                       f"{type(content).__name__}")


def resolve_classes(classes: Union[str, Sequence[str]], palette: Union[None, str, Sequence[Sequence[int]]],
                    root: Path) -> Tuple[Tuple[str, ...], Optional[List[Colour]]]:
    """Class names and palette (None where none is given) from inline values or YAML/JSON files under ``root``.

    Args:
        classes: names in id order, or a classes file.
        palette: colours in class order, a file of them (a list, or a mapping with ``palette``), or None for the
            classes file's own.
        root: the dataset folder, which relative file paths start from.
    """
    source, error = "classes", ValueError
    where, palette_error = "palette", ValueError
    if isinstance(classes, str):
        source, error = str(root / classes), DatasetError
        classes, from_file = _class_file(root / classes)
        if palette is None:
            palette, where, palette_error = from_file, f"{source} (palette)", DatasetError
    names = _class_names(classes, source, error)
    if palette is None:
        return names, None
    if isinstance(palette, str):
        where, palette_error = str(root / palette), DatasetError
        content = _read_file(root / palette, "palette")
        palette = content.get("palette") if isinstance(content, dict) else content
    colours = _colours(palette, where, palette_error)
    error = palette_error
    if len(colours) != len(names):
        raise error(f"{where}: {len(colours)} colours for {len(names)} classes; give one [r, g, b] per class")
    return names, colours


def _class_names(classes: Any, source: str, error: type) -> Tuple[str, ...]:
    if not isinstance(classes, (list, tuple)) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise error(f"{source}: expected a non-empty list of class names, got {classes!r}")
    repeated = sorted({c for c in classes if list(classes).count(c) > 1})
    if repeated:
        raise error(f"{source}: class names {repeated} appear more than once; each class is one entry")
    if len(classes) >= IGNORE_INDEX:
        raise error(f"{source}: {len(classes)} classes; at most {IGNORE_INDEX} fit 8-bit masks (255 is the ignore "
                    "label)")
    return tuple(classes)


def index_labels(num_classes: int, label_map: Optional[Dict[int, Optional[int]]], ignore_index: int) -> LabelMap:
    """The ``LabelMap`` of index masks: ids 0..C-1 are the classes, or ``label_map`` maps raw ids to them; the
    ``ignore_index`` id (and any id mapped to 255 or None) becomes the training ignore label.

    Args:
        num_classes: classes in the data.
        label_map: ``{raw id: class id, or 255 or None to ignore it}``; None: raw ids are class ids.
        ignore_index: the raw id of unlabelled pixels.
    """
    if not 0 <= ignore_index <= 255:
        raise ValueError(f"ignore_index: the id of unlabelled pixels, 0..255, got {ignore_index}")
    if label_map is None:
        if ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} is also the id of class {ignore_index} of {num_classes}: "
                             "choose another ignore_index, or give label_map to renumber the mask ids")
        return LabelMap({**{k: k for k in range(num_classes)}, ignore_index: IGNORE_INDEX},
                        known=f"class ids 0..{num_classes - 1} and {ignore_index} = ignore",
                        fix="Fix the mask, or map its ids to classes with label_map (raw id: class id)")
    table = {ignore_index: IGNORE_INDEX}
    for raw, train in label_map.items():
        if not 0 <= raw <= 255:
            raise ValueError(f"label_map: raw id {raw} is not an 8-bit mask value (0..255)")
        if train is not None and train != IGNORE_INDEX and not 0 <= train < num_classes:
            raise ValueError(f"label_map: raw id {raw} maps to {train}, but the classes are 0..{num_classes - 1}; "
                             f"map it to a class id, or to {IGNORE_INDEX} or null to ignore it")
        table[raw] = IGNORE_INDEX if train is None else train
    return LabelMap(table, known=f"the raw ids of label_map {sorted(label_map)} and {ignore_index} = ignore",
                    fix="Add the id to label_map, or fix the mask")


def colour_labels(palette: Sequence[Colour], ignore_colours: Sequence[Colour]) -> ColourMap:
    """The ``ColourMap`` of RGB masks: class k is painted ``palette[k]``; ``ignore_colours`` are unlabelled.

    Args:
        palette: one colour per class.
        ignore_colours: colours of unlabelled pixels.
    """
    shared = sorted({c for c in palette if list(palette).count(c) > 1} | (set(palette) & set(ignore_colours)))
    if shared:
        raise ValueError(f"palette: colours {shared} stand for more than one class (or for a class and "
                         "ignore_colours), so RGB masks cannot tell them apart; give each class its own colour")
    return ColourMap({**dict.fromkeys(ignore_colours, IGNORE_INDEX), **{c: k for k, c in enumerate(palette)}},
                     fix="Add it to palette or ignore_colours, or repaint the mask (JPEG or smooth resizing blends "
                         "colours: save masks as PNG, resize them nearest-neighbour)")


class FolderDataset(PairedFilesDataset):
    """One split of a folder dataset (``FolderDataModule``).

    Args:
        root: the dataset folder.
        split: the split to read.
        files: where the images, masks and split lists are.
        classes: class names in id order.
        palette: one colour per class.
        labels: decodes masks to training ids (``LabelMap`` for index masks, ``ColourMap`` for RGB ones).
        **options: passed to ``SegmentationDataset`` (``transform``, ``max_samples``, ...).
    """

    layout = FOLDER_LAYOUT

    def __init__(self, root: str | Path, split: str, files: FolderLayout, classes: Sequence[str],
                 palette: Sequence[Colour], labels: Union[LabelMap, ColourMap], **options: Any) -> None:
        self.files, self.labels, self.layout = files, labels, files.describe()
        self.classes, self.palette = tuple(classes), list(palette)
        super().__init__(root, split, **options)

    def find_pairs(self, split: str) -> List[FilePair]:
        return self.files.pairs(self.root, split, self.labels)

    def load_item(self, item: int) -> Sample:
        pair = self.pairs[item]
        if not pair.image.is_file() and pair.label.is_file():
            raise DatasetError(f"mask {pair.label} has no image: expected {pair.image}. Add the image or remove the "
                               "mask")
        if isinstance(self.labels, LabelMap):
            return super().load_item(item)
        image = read_image(pair.image)
        rgb = read_label(pair.label, pair.image, modes=("RGB", "RGBA"), expected=RGB_MASK)[..., :3]
        check_same_size(pair.image, image, pair.label, rgb)
        return Sample(image, self.labels.apply(rgb, pair.label), pair.name)


@register_datamodule("folder")
class FolderDataModule(FileDataModule):
    """Your own data: a folder of images and masks with your classes, nothing to subclass. By default
    ``ROOT/images/{train,val,test}/NAME.jpg`` and ``ROOT/masks/.../NAME.png`` with the class names (and colours)
    in ``ROOT/classes.yaml``; ``test`` is optional.

    Args:
        root: the dataset folder; the other paths are relative to it.
        classes: class names in id order, or a YAML/JSON file (relative to ``root``) holding a list of names or a
            mapping with ``classes`` and, optionally, ``palette``.
        palette: one [r, g, b] per class (for plots, and what RGB masks are painted with), or a YAML/JSON file of
            them; None: the classes file's, else generated colours.
        image_dir: folder of a split's images; ``{split}`` stands for the split's name.
        mask_dir: folder of a split's masks; ``{split}`` as in ``image_dir``.
        image_suffix: end of every image file name, NAME + suffix (``.jpg``, ``.png``, ``_leftImg8bit.png``).
        mask_suffix: end of every mask file name.
        split_list: a split's list file of NAMEs, one a line (e.g. ``splits/{split}.txt``): then the folders may
            hold every split's files. None: a split is every image in its folder.
        mask_format: ``index``: masks hold ids (single-channel or palette-indexed PNGs); ``rgb``: masks hold class
            colours (RGB PNGs), decoded through ``palette``.
        label_map: for index masks whose ids are not the class ids: ``{raw id: class id}`` (255 or null ignores
            an id); every id in a mask must be a key, or ``ignore_index``. None: ids 0..C-1 are the classes.
        ignore_index: the id of unlabelled pixels in index masks (ignored in losses and metrics).
        ignore_colours: colours of unlabelled pixels in RGB masks, e.g. [[0, 0, 0]].
        **kwargs: loader, ``max_samples``, ``transforms`` and ``skip_bad_samples`` options of
            ``SegmentationDataModule``.
    """

    dataset_type = FolderDataset
    optional_splits = ("test",)
    default_transforms = TransformConfig(crop_size=(512, 512), scale_range=(0.5, 2.0), color_jitter=0.2,
                                         pad_to_multiple=32)

    def __init__(self, root: str, classes: Union[str, List[str]] = "classes.yaml",
                 palette: Optional[Union[str, List[Tuple[int, int, int]]]] = None, image_dir: str = "images/{split}",
                 mask_dir: str = "masks/{split}", image_suffix: str = ".jpg", mask_suffix: str = ".png",
                 split_list: Optional[str] = None, mask_format: str = "index",
                 label_map: Optional[Dict[int, Optional[int]]] = None, ignore_index: int = IGNORE_INDEX,
                 ignore_colours: Optional[List[Tuple[int, int, int]]] = None, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        if mask_format not in MASK_FORMATS:
            raise ValueError(f"mask_format: one of {list(MASK_FORMATS)}, got '{mask_format}'")
        self.files = FolderLayout(image_dir, mask_dir, image_suffix, mask_suffix, split_list)
        self._classes, colours = resolve_classes(classes, palette, self.root)
        if mask_format == "index":
            if ignore_colours:
                raise ValueError("ignore_colours: only RGB masks have colours; index masks mark unlabelled pixels "
                                 "with ignore_index")
            self.labels: Union[LabelMap, ColourMap] = index_labels(len(self._classes), label_map, ignore_index)
        else:
            if label_map is not None:
                raise ValueError("label_map: maps the ids of index masks; RGB masks map colours to classes through "
                                 "palette (and ignore_colours)")
            if colours is None:
                raise ValueError("mask_format rgb: masks are decoded through the palette, but none is given; add "
                                 "palette (one [r, g, b] per class) inline or to the classes file")
            self.labels = colour_labels(colours, _colours(ignore_colours or [], "ignore_colours"))
        self._palette = colours or generated_palette(len(self._classes))

    def make_dataset(self, split: str, **options: Any) -> FolderDataset:
        return FolderDataset(self.root, split, self.files, self._classes, self._palette, self.labels, **options)

    @property
    def classes(self) -> Tuple[str, ...]:
        return self._classes

    @property
    def palette(self) -> List[Colour]:
        return list(self._palette)
