"""Paired training images: (original, graded) files matched by file name, decoded once, kept in memory.

Two folders hold the pairs: ``inputs/holiday.jpg`` pairs with ``targets/holiday.png`` (the stem is the
key, extensions may differ; listing order never matters). Every image becomes RGB float32 in [0, 1]
``(3,H,W)`` through :func:`lutkern.imageio.read_image` (any Pillow mode, 16-bit precision kept, EXIF
orientation applied) and is resized to ``image_size x image_size`` as the seed experiment did.
About 200 pairs at 256x256 take ~300 MB, so the whole set stays in memory as two tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
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
    """``inputs`` and ``targets`` ``(N,3,S,S)`` float32 in [0,1]; ``names[i]`` is pair i's file stem."""

    names: list[str]
    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, indices: list[int]) -> PairedImages:
        idx = torch.tensor(indices, dtype=torch.long)
        return PairedImages([self.names[i] for i in indices], self.inputs[idx], self.targets[idx])


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


def read_rgb(path: Path) -> torch.Tensor:
    """``(3,H,W)`` float32 RGB in [0,1]; unreadable files raise DataError naming the file."""
    from lutkern.imageio import read_image

    try:
        return read_image(path).pixels.float()
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from exc


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(3,H,W)`` or ``(N,3,H,W)`` to ``size x size`` (aspect not kept, as in the seed).

    Antialiased bilinear: its weights are non-negative and sum to 1, so [0,1] stays [0,1].
    """
    batch = images if images.dim() == 4 else images.unsqueeze(0)
    if batch.shape[-2:] != (size, size):
        batch = F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return batch if images.dim() == 4 else batch.squeeze(0)


def load_pairs(
    pairs: list[PairFiles], image_size: int, progress: Callable[[int], None] | None = None
) -> PairedImages:
    """Decode and resize every pair; ``progress(i)`` is called after pair i.

    A pair whose two files differ in size is a DataError naming both (a crop or a resize happened
    between the original and its graded copy, so pixel i of one is not pixel i of the other).
    """
    inputs, targets = [], []
    for i, pair in enumerate(pairs):
        a, b = read_rgb(pair.input), read_rgb(pair.target)
        if a.shape != b.shape:
            raise DataError(f"{pair.input} is {a.shape[2]}x{a.shape[1]} but {pair.target} is "
                            f"{b.shape[2]}x{b.shape[1]}; a pair must have the same size")
        inputs.append(resize(a, image_size))
        targets.append(resize(b, image_size))
        if progress is not None:
            progress(i)
    return PairedImages([p.name for p in pairs], torch.stack(inputs), torch.stack(targets))


def split_names(names: list[str], val_fraction: float) -> tuple[list[int], list[int]]:
    """Deterministic train/validation split: ``(train_indices, val_indices)``, both sorted.

    Names are ranked by a hash of the name, so the split depends on the names only: not on the seed,
    the listing order or the file extensions.
    Needs 0 < val_fraction < 1 and at least two names; each side gets at least one.
    """
    if not 0 < val_fraction < 1:
        raise DataError(f"the validation fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if len(names) < 2:
        raise DataError(f"need at least 2 pairs to split into training and validation, got {len(names)}")
    n_val = min(max(round(len(names) * val_fraction), 1), len(names) - 1)
    ranked = sorted(range(len(names)), key=lambda i: hashlib.sha256(names[i].encode()).hexdigest())
    val = sorted(ranked[:n_val])
    train = sorted(ranked[n_val:])
    return train, val
