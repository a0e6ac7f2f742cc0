"""The pairs a training run learns from and validates on: the built-in demo set or the user's folders,
split so that whole photographs are held out (:func:`img2lut.data.group_names`), with the thumbnails the
CNN sees and the true LUTs where they are known."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from . import pack_results
from .codes import Codes
from .config import TrainConfig
from .data import (
    PairedImages,
    check_held_out,
    check_pair_folders,
    default_true_lut,
    group_names,
    pair_files,
    read_true_lut,
    resize,
    split_groups,
)
from .demo import ensure_demo
from .pair_loading import load_sets


@dataclass
class Data:
    train: PairedImages
    val: PairedImages
    train_thumbs: torch.Tensor | Codes  # (N,3,c,c): what the CNN sees of each pair, c = cnn_size
    val_thumbs: torch.Tensor | Codes
    source: str  # where the pairs came from, in words
    truth: torch.Tensor | None  # (S,S,S,3): the true LUT at the learned LUT's lattice, when known
    truth_path: str | None
    grouping: str  # how validation was held out, in words (for the summary)
    val_truths: torch.Tensor | None = None  # (N_val,S,S,S,3): the true LUT of each validation pair


def load_training_data(config: TrainConfig, console: Console, cache: Path | None = None) -> Data:
    """Decode the run's pairs (building the demo set on first use) and split them. The true LUT is read
    before any image is decoded, so a bad file fails at once. ``cache``: the pair cache's folder
    (:mod:`img2lut.pair_cache`), None for none; under torchrun, rank 0 fills it and the other ranks then
    map it, each reading only the pairs its batches take."""
    inputs, targets = config.inputs, config.targets
    val_inputs, val_targets, truth = config.val_inputs, config.val_targets, config.truth
    demo = None
    if inputs is None:
        with console.status(f"building the {config.demo} demo data set (first run only)..."):
            demo = ensure_demo(name=config.demo)
        inputs, targets = demo.inputs, demo.targets
        val_inputs, val_targets = demo.val_inputs, demo.val_targets
        source = f"{config.demo} demo data in {demo.root}"
    else:
        source = f"{inputs} + {targets}"
    truth = truth or default_true_lut(inputs)
    truth_lut = read_true_lut(truth, config.lut_size) if truth is not None else None
    check_pair_folders(inputs, targets)
    if val_inputs is not None:
        check_pair_folders(val_inputs, val_targets, what="val-")
    folders = [(inputs, targets)] + ([(val_inputs, val_targets)] if val_inputs is not None else [])
    sets = load_sets([pair_files(*f) for f in folders], config.image_size, console, cache)
    if val_inputs is not None:
        train, val = sets
        check_held_out(train, val, inputs, val_inputs)
        grouping = f"validation pairs from {val_inputs}"
    else:
        train, val, grouping = _split(sets[0], config)
    val_truths = demo.true_luts(val.names, config.lut_size) if demo is not None else None
    cnn = config.cnn_size or config.image_size
    return Data(train, val, thumbnails(train.inputs, cnn), thumbnails(val.inputs, cnn), source, truth_lut,
                truth, grouping, val_truths)


def thumbnails(images: Codes, size: int) -> torch.Tensor | Codes:
    """What the CNN sees: ``images`` resized to ``size`` (float32 ``(N,3,c,c)``, made a batch at a time;
    those of a pack kept beside it), or the images themselves when ``size`` is theirs."""
    if images.shape[-1] == size:
        return images

    def compute(images: Codes) -> torch.Tensor:
        return torch.cat([resize(batch, size) for batch in images.batches()]) if len(images) else \
            torch.empty(0, 3, size, size)
    return pack_results.per_image(images, "thumbnails", {"size": size, **pack_results.environment()}, compute)


def _split(pairs: PairedImages, config: TrainConfig) -> tuple[PairedImages, PairedImages, str]:
    """Training and validation pairs, whole photographs held out; the grouping in words."""
    groups = group_names(pairs.names, config.group_by)
    train_idx, val_idx = split_groups(groups.groups, config.val_fraction)
    held = sorted({groups.groups[i] for i in val_idx})
    shown = ", ".join(held[:8]) + (f" and {len(held) - 8} more" if len(held) > 8 else "")
    grouping = f"{len(held)} of {groups.count} photographs held out whole ({groups.rule}): {shown}"
    return pairs.subset(train_idx), pairs.subset(val_idx), grouping
