"""Paired training images: (original, graded) files matched by file name, how they are grouped by
photograph and split for validation.

Two folders hold the pairs: ``inputs/holiday.jpg`` pairs with ``targets/holiday.png`` (the stem is the
key, extensions may differ; listing order never matters). Every image is read as
:func:`lutkern.imageio.read_image` reads it (any Pillow mode, 16-bit precision kept, EXIF orientation
applied; DPX codes at their bit depth; EXR values as stored, unclamped: a learned LUT covers inputs in
[0, 1], so scene-linear pairs with values above 1 are best log-encoded first) and resized to
``image_size x image_size`` as the seed experiment did; :mod:`img2lut.pair_loading` decodes a set
(at the size needed, in parallel, once: the pair cache) and holds it as codes (:class:`PairedImages`).
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

import lutkern
from lutkern.files import same_file
from lutkern.grading import sample_lut
from lutkern.imageio import read_image

from .codes import Codes
from .decoding import resize as resize  # where the other modules import it from

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".dpx", ".exr")
_MAX_NAMES_IN_ERROR = 10


class DataError(ValueError):
    """A problem with the data folders or files; command-line tools print it as one line."""


@dataclass(frozen=True)
class PairFiles:
    name: str
    input: Path
    target: Path


@dataclass
class PairedImages:
    """``inputs`` and ``targets``: ``N`` images ``(3,S,S)`` held as codes (:class:`img2lut.codes.Codes`:
    indexing gives float32 tensors, values in [0,1] but for EXR); ``names[i]`` is pair i's file stem."""

    names: list[str]
    inputs: Codes
    targets: Codes

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, indices: list[int]) -> PairedImages:
        return PairedImages([self.names[i] for i in indices], self.inputs.subset(indices),
                            self.targets.subset(indices))


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMES_IN_ERROR])
    more = len(names) - _MAX_NAMES_IN_ERROR
    return shown + (f" and {more} more" if more > 0 else "")


def list_images(folder: str | Path) -> dict[str, Path]:
    """``{stem: path}`` of the image files directly in ``folder`` (hidden files skipped).

    Raises DataError when the folder is missing, holds no image, or two images share a stem.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise DataError(f"{folder}: no images (looked for {' '.join(IMAGE_EXTENSIONS)})")
    by_stem: dict[str, Path] = {}
    for path in files:
        if path.stem in by_stem:
            raise DataError(f"{folder}: {by_stem[path.stem].name} and {path.name} share the name "
                            f"{path.stem!r}; pairs are matched by file name, so keep one")
        by_stem[path.stem] = path
    return by_stem


def pair_files(inputs: str | Path, targets: str | Path) -> list[PairFiles]:
    """Match the images of two folders by file stem; sorted by name.

    Raises DataError listing the unmatched names of both folders.
    """
    ins, outs = list_images(inputs), list_images(targets)
    only_in, only_out = sorted(ins.keys() - outs.keys()), sorted(outs.keys() - ins.keys())
    if only_in or only_out:
        parts = []
        if only_in:
            parts.append(f"{len(only_in)} in {inputs} without a target: {_listing(only_in)}")
        if only_out:
            parts.append(f"{len(only_out)} in {targets} without an input: {_listing(only_out)}")
        raise DataError("unmatched images (pairs are matched by file name without extension): "
                        + "; ".join(parts))
    return [PairFiles(name, ins[name], outs[name]) for name in sorted(ins)]


def _naming(path: str | Path, exc: Exception, message: str = "{}") -> DataError:
    """``exc`` as a DataError naming ``path`` once: as it is when its message already names the file (the
    readers' own errors do), else ``path: message`` with the error's text in ``message``'s braces."""
    text = str(exc)
    return DataError(text if str(path) in text else f"{path}: " + message.format(text))


def read_rgb(path: Path) -> torch.Tensor:
    """``(3,H,W)`` float32 RGB in [0,1]; unreadable files raise DataError naming the file."""
    try:
        return read_image(path).pixels.float()
    except (OSError, ValueError) as exc:
        raise _naming(path, exc, "cannot read image ({})") from exc


def physical_memory() -> int | None:
    """Bytes of memory this machine has (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


# The default grouping: a trailing counter after a separator names one of several pairs cut from (or
# shot of) the same photograph: "beach-003", "beach_crop12", "beach crop 2", "beach.f07" -> "beach".
DEFAULT_GROUP_PATTERN = r"^(?P<group>.+?)[-_. ]+(?:crop|tile|patch|frame|shot|aug|exp|c|f|v)?[-_ ]*\d+$"
# What is left of a camera's file numbering (IMG_0001, DSC_0042, PXL_20240101_...): a counter over
# different photographs, not crops of one, so the default keeps each such file its own photograph.
CAMERA_PREFIX = re.compile(r"(?i)(img|dsc[fn]?|dcim|pxl|gopr|dji|mvi|_?mg|sam|cimg|pict|imag|image|"
                           r"photo|pic|wp|screenshot)(_\d{8})?")


@dataclass(frozen=True)
class Grouping:
    """Which pairs come from the same photograph: ``groups[i]`` is pair i's group key.

    rule: how the keys were made, in words (reported in the run summary).
    """

    groups: list[str]
    rule: str

    @property
    def count(self) -> int:
        return len(set(self.groups))


def group_names(names: list[str], pattern: str | None = "default") -> Grouping:
    """Group pair names by photograph.

    pattern: ``"default"`` (:data:`DEFAULT_GROUP_PATTERN`: a trailing counter is dropped, however few
    photographs that leaves, two of three crops each included; camera numbering such as ``IMG_0001``
    (:data:`CAMERA_PREFIX`) is a counter over photographs, each kept its own; when every name would
    fall into one group, no photograph can be held out whole, and every name is its own, with a
    warning), ``"none"`` or None (every name its own group), or a regular expression searched in each
    name whose group ``group`` (else its first group, else the whole match) is the key. A name it does
    not match is its own group (a warning counts them); a regex that matches no name is a DataError.
    """
    if pattern in (None, "none"):
        return Grouping(list(names), "one photograph per pair")
    default = pattern == "default"
    try:
        regex = re.compile(DEFAULT_GROUP_PATTERN if default else pattern)
    except re.error as exc:
        raise DataError(f"--group-by {pattern!r} is not a regular expression ({exc})") from None
    keys = [_group_key(regex, name) for name in names]
    if default:
        camera = [CAMERA_PREFIX.fullmatch(key) is not None for key in keys]
        keys = [name if numbered else key for key, name, numbered in zip(keys, names, camera, strict=True)]
        if all(camera):
            return Grouping(list(names), "one photograph per pair (the names are a camera's numbering)")
        if len(set(keys)) == 1 and len(set(names)) > 1:
            warnings.warn(f"the names ({_listing(sorted(names))}) read as crops of one photograph "
                          f"{keys[0]!r}, and none could be held out whole: each pair is taken as its own "
                          "photograph; if they are crops of one photo, give validation pairs of other "
                          "photos with --val-inputs/--val-targets", stacklevel=2)
            return Grouping(list(names), "one photograph per pair (the names show one photograph only)")
        kept = "; camera numbering such as IMG_0001 one photograph per file" if any(camera) else ""
        return Grouping(keys, "a trailing counter dropped from the name" + kept)
    matched = sum(regex.search(name) is not None for name in names)
    if matched == 0:
        raise DataError(f"--group-by {pattern!r} matches none of the {len(names)} pair names "
                        f"({_listing(sorted(names))}); every pair would be its own photograph: fix the "
                        "pattern, or pass --group-by none to mean that")
    if matched < len(names):
        unmatched = sorted(name for name in names if regex.search(name) is None)
        warnings.warn(f"--group-by {pattern!r} does not match {len(unmatched)} of the {len(names)} pair "
                      f"names ({_listing(unmatched)}): each of those is its own photograph", stacklevel=2)
    return Grouping(keys, f"--group-by {pattern!r}")


def _group_key(regex: re.Pattern, name: str) -> str:
    match = regex.search(name)
    if match is None:
        return name
    if "group" in regex.groupindex:
        key = match.group("group")
    else:
        key = match.group(1) if regex.groups else match.group(0)
    return key or name


def check_pair_folders(inputs: str | Path, targets: str | Path, *, what: str = "") -> None:
    """DataError when ``inputs`` and ``targets`` are one folder: every pair would be an image and itself,
    and a model learns the identity. ``what``: the flags' prefix in the message (``"--val-"``)."""
    if same_file(inputs, targets):
        raise DataError(f"--{what}inputs and --{what}targets are the same folder ({inputs}): each image "
                        "would be paired with itself; the targets are the graded copies")


def check_held_out(train: PairedImages, val: PairedImages, train_folder: str | Path,
                   val_folder: str | Path) -> None:
    """DataError when validation pairs from their own folders are not held out: the same folder as
    training, or a validation original that is also a training original (the same pixels, whatever its
    name or file format): the numbers would measure how well the model remembers, not how it does on
    photos it never saw."""
    if same_file(train_folder, val_folder):
        raise DataError(f"--val-inputs {val_folder} is the training --inputs folder: validation would be "
                        "on the training pairs; give a folder of other photos, or leave --val-inputs out "
                        "to hold photographs out of --inputs")
    seen = {_digest(image): name for name, image in zip(train.names, train.inputs, strict=True)}
    shared = [f"{name} (= {seen[d]})" for name, image in zip(val.names, val.inputs, strict=True)
              if (d := _digest(image)) in seen]
    if shared:
        raise DataError(f"{len(shared)} of the {len(val)} validation originals in {val_folder} are also "
                        f"training originals: {_listing(shared)}; validation must hold photos training "
                        "never sees")


def _digest(image: torch.Tensor) -> str:
    return hashlib.sha256(image.contiguous().numpy().tobytes()).hexdigest()


def split_groups(groups: list[str], val_fraction: float) -> tuple[list[int], list[int]]:
    """Deterministic train/validation split that keeps every group on one side.

    groups: the group key of each pair (:func:`group_names`). Groups are ranked by a hash of the key,
    so the split depends on the keys only (not the seed, the listing order or the file extensions), and
    validation takes groups in that order until it holds ``val_fraction`` of the pairs (at least one
    group, never all). Returns ``(train_indices, val_indices)``, both sorted.
    """
    if not 0 < val_fraction < 1:
        raise DataError(f"the validation fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    members: dict[str, list[int]] = {}
    for i, key in enumerate(groups):
        members.setdefault(key, []).append(i)
    if len(members) < 2:
        raise DataError(f"need pairs from at least 2 photographs to hold whole photographs out for "
                        f"validation, got {len(groups)} pairs from 1 ({next(iter(members), '-')!r}); "
                        "pass --group-by none if the pairs are different photos, or "
                        "--val-inputs/--val-targets")
    ranked = sorted(members, key=lambda k: hashlib.sha256(k.encode()).hexdigest())
    wanted = max(round(len(groups) * val_fraction), 1)
    held: list[str] = []
    for key in ranked[:-1]:
        if sum(len(members[k]) for k in held) >= wanted:
            break
        held.append(key)
    val = [i for key in held for i in members[key]]
    train = [i for key in ranked[len(held):] for i in members[key]]
    return sorted(train), sorted(val)


def split_names(names: list[str], val_fraction: float) -> tuple[list[int], list[int]]:
    """:func:`split_groups` with every name its own group (one photograph per pair)."""
    if len(names) < 2:
        raise DataError(f"need at least 2 pairs to split into training and validation, got {len(names)}")
    return split_groups(list(names), val_fraction)


def default_true_lut(inputs: str | Path) -> str | None:
    """``truth.cube`` in the folder that holds the inputs folder, where the demo sets keep their true LUT
    (and where a user may put one); None when there is none."""
    path = Path(inputs).parent / "truth.cube"
    return str(path) if path.is_file() else None


def read_true_lut(path: str | Path, lut_size: int) -> torch.Tensor:
    """The whole transform of the LUT file at ``path`` (any format :func:`lutkern.read_lut` reads: domain,
    shaper, 3D table, or a CLF's steps) sampled at a learned
    LUT's lattice ``(S,S,S,3)`` (the table itself when it is a plain 3D table of that size): the true LUT
    a learned one is compared with, or starts at. DataError naming the file when it cannot be read."""
    path = Path(path)
    try:
        cube = lutkern.read_lut(path)
    except (OSError, ValueError) as exc:  # LUTFormatError is a ValueError
        raise _naming(path, exc) from None
    return sample_lut(cube, lut_size).float()
