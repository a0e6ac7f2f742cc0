"""The settings of a training run: :class:`TrainConfig`, the presets, their checks, and what may change
when a run is resumed. A config is built from the preset and the flags a user gave (explicit flags win),
or read back from a checkpoint; it is saved whole in every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from lutkern.cli import check_device, default_device

from .demo import DEMO_SETS
from .diagnosis import RECIPES
from .image_stats import NORMALISERS

SCHEDULERS = ("plateau", "cosine")
AMP_CHOICES = ("none", "bf16", "fp16")
MAX_BATCH = 4096
MAX_IMAGE_SIZE = 8192


class UsageError(ValueError):
    """A setting that cannot work; the commands print it as one line."""


@dataclass
class TrainConfig:
    """Every setting of a run; saved in the checkpoint. ``cnn_size`` 0 = ``image_size``."""

    preset: str = "default"
    demo: str = "bw"  # the built-in demo set used when inputs is None
    inputs: str | None = None  # None: the built-in demo data
    targets: str | None = None
    val_inputs: str | None = None  # explicit validation pairs; otherwise split by --val-fraction
    val_targets: str | None = None
    group_by: str = "default"  # which pairs share a photograph: img2lut.data.group_names
    truth: str | None = None  # the true LUT (--true-lut), if known; default: truth.cube beside the inputs
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    # The LUT tables: shared LUT and basis LUTs (the direct head's last bias); None: lr.
    bias_lr: float | None = 1e-2
    scheduler: str = "cosine"
    plateau_factor: float = 0.1
    plateau_patience: int = 10
    lut_size: int = 33
    interpolation: str = "trilinear"
    head: str = "basis"
    basis_luts: int = 8
    init: str = "default"
    init_from: str | None = None  # a LUT file the CNN starts at (e.g. from python -m img2lut.fit)
    fit_first: bool = True  # start at a LUT fitted to the training pairs (when no init_from)
    # "auto": img2lut.diagnosis decides from the pairs; saved resolved, so a resumed run builds the same.
    recipe: str = "auto"  # or one of img2lut.diagnosis.RECIPES
    normalise: str = "auto"  # or a correction of img2lut.image_stats.NORMALISERS
    # Fraction of training inputs shown under a further exposure / white-balance error (same target):
    # only where the chosen correction normalises them (never for one look).
    photometric: float = 0.0
    refit_all: bool = True  # where the fitted LUT alone is kept, refit it on all pairs at the end
    # Adaptive recipe: start the head at a linear read of the statistics fitted after the LUT
    # (img2lut.readout), the weights and ridge chosen across the training photographs.
    readout: bool = True
    select_best: bool = True  # keep the epoch (0 = the start LUT) best on the validation photos
    augment: bool = True  # the CNN sees each photo flipped / turned at random (the LUT acts per pixel)
    image_size: int = 256
    cnn_size: int = 32
    loss_stride: int = 2
    ssim_weight: float = 0.0
    smooth_weight: float = 0.0
    tv_weight: float = 1e-2
    mono_weight: float = 1e-2
    val_fraction: float = 0.1
    preview_every: int = 10
    checkpoint_every: int = 10  # and at the end, and on Ctrl-C
    seed: int = 0
    device: str = field(default_factory=default_device)
    backend: str | None = None  # lutkern.apply_lut's; None: automatic
    # Speed options, measured in docs/scaling.md.
    amp: str = "none"  # autocast dtype of the CNN and loss: none, bf16, fp16 (with loss scaling)
    channels_last: bool | None = None  # None: by device (on for the CPU, where it measured faster)
    compile: bool = False
    sync_bn: bool = False  # under torchrun on GPUs: BatchNorm statistics over all ranks' batches
    experiment: str | None = None  # default: "demo" on the demo data, else "pairs"
    out: str = "runs"
    lut_format: str = ".cube"  # the file format of the run's lut.<format> (lutkern.cli.LUT_3D_FORMATS)


PRESETS: dict[str, dict] = {
    # Chosen by measurement on held-out photos, sized for a 2-core CPU: see docs/generalization.md.
    "default": {},
    # The seed experiment: batch 64, LUT 33, lr 1e-2, 500 epochs, 256x256, Adam,
    # ReduceLROnPlateau(factor=0.1, patience=10) on the epoch loss, MSE, PyTorch's initialisation.
    "seed": dict(epochs=500, batch_size=64, lr=1e-2, scheduler="plateau", lut_size=33, image_size=256,
                 bias_lr=None, cnn_size=0, loss_stride=1, tv_weight=0.0, mono_weight=0.0, init="default",
                 head="direct", fit_first=False, select_best=False, augment=False, preview_every=50,
                 checkpoint_every=1, recipe="adaptive", normalise="none", refit_all=False),
}
# Settings that may differ when resuming; anything else must match the checkpoint.
RESUMABLE_CHANGES = ("epochs", "device", "backend", "preview_every", "checkpoint_every", "amp",
                     "channels_last", "compile", "sync_bn", "lut_format")


def flag(name: str) -> str:
    """The command-line flag of a setting: ``batch_size`` -> ``--batch-size`` (``truth``: ``--true-lut``)."""
    return "--true-lut" if name == "truth" else "--" + name.replace("_", "-")


def model_arguments(config: TrainConfig) -> dict:
    """The :class:`~img2lut.model.ResNetLUTGenerator` arguments of a run (its checkpoints' model_config)."""
    return {"lut_size": config.lut_size, "interpolation": config.interpolation, "init": config.init,
            "head": config.head, "basis_luts": config.basis_luts,
            "normalise": "none" if config.normalise == "auto" else config.normalise}


def default_experiment(inputs: str | None, demo: str | None) -> str:
    if inputs is not None:
        return "pairs"
    return "demo" if demo in (None, "bw") else f"demo-{demo}"


def config_from_flags(given: dict) -> TrainConfig:
    """The config of a new run: the preset (``given["preset"]``, default ``default``) with ``given`` (the
    settings the user passed) on top. UsageError for a setting that cannot work."""
    preset = given.get("preset", "default")
    config = TrainConfig(**{**PRESETS[preset], **given, "preset": preset})
    if config.head == "direct" and (config.init_from is not None or config.fit_first):
        if "init" not in given:
            config.init = "identity"  # a warm start needs the last weight scaled down, as this init does
        if "bias_lr" not in given:
            config.bias_lr = None  # the shared LUT is already fitted: a large lr knocks it off (docs/fit.md)
    if config.head == "direct":
        config.normalise = "none"  # the seed's head has no levels curves
    if config.init_from is not None:  # a given start LUT: train the CNN from it, on the inputs as they are
        config.recipe = given.get("recipe", "adaptive")
        config.normalise = given.get("normalise", "none")
    if config.experiment is None:
        config.experiment = default_experiment(config.inputs, config.demo)
    validate(config)
    return config


def resume_config(saved: dict, given: dict) -> TrainConfig:
    """A checkpoint's ``saved`` config with the ``given`` settings that may change on resume. ValueError
    for a damaged config, UsageError for any other differing setting."""
    try:
        config = TrainConfig(**saved)
    except TypeError as exc:  # not a dict, or keys this version does not know
        raise ValueError(f"the training config is damaged ({exc})") from None
    wrong = [f"{f.name}={getattr(config, f.name)!r:.40}" for f in dataclasses.fields(TrainConfig)
             if not _of_type(getattr(config, f.name), f.type)]
    if wrong:
        raise ValueError(f"the training config is damaged ({', '.join(wrong)})")
    changes = {}
    for key, value in given.items():
        if key in RESUMABLE_CHANGES:
            changes[key] = value
        elif key not in ("out", "experiment") and getattr(config, key) != value:
            allowed = ", ".join(flag(k) for k in RESUMABLE_CHANGES)
            raise UsageError(f"{flag(key)} {value} differs from the resumed run's {getattr(config, key)!r}; "
                             f"only {allowed} may change")
    config = dataclasses.replace(config, **changes)
    validate(config)
    return config


def _of_type(value, annotation: str) -> bool:
    """Whether ``value`` fits a TrainConfig field's annotation (``"int"``, ``"float | None"``, ...)."""
    kinds = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
    names = [name.strip() for name in annotation.split("|")]
    if value is None:
        return "None" in names
    return any(isinstance(value, kinds[n]) and (n == "bool" or not isinstance(value, bool))
               for n in names if n != "None")


def _need(ok: bool, name: str, what: str, value) -> None:
    if not ok:
        raise UsageError(f"{flag(name)} must be {what}, got {value!r}")


def validate(c: TrainConfig) -> None:
    """UsageError naming the flag of the first setting that cannot work."""
    _need(2 <= c.lut_size <= 256, "lut_size", "between 2 and 256", c.lut_size)
    _need(1 <= c.basis_luts <= 256, "basis_luts", "between 1 and 256", c.basis_luts)
    _need(c.epochs >= 1, "epochs", ">= 1", c.epochs)
    _need(1 <= c.batch_size <= MAX_BATCH, "batch_size", f"between 1 and {MAX_BATCH}", c.batch_size)
    _need(16 <= c.image_size <= MAX_IMAGE_SIZE, "image_size", f"between 16 and {MAX_IMAGE_SIZE}",
          c.image_size)
    # Three stride-2 blocks: below 16 px the last BatchNorm sees too few values per channel.
    _need(c.cnn_size == 0 or 16 <= c.cnn_size <= c.image_size, "cnn_size",
          f"0 or between 16 and --image-size {c.image_size}", c.cnn_size)
    # SSIM's 11-pixel window must fit in the subsampled image.
    most = c.image_size // 11 if c.ssim_weight else c.image_size
    _need(1 <= c.loss_stride <= most, "loss_stride", f"between 1 and {most} (--image-size {c.image_size}"
          f"{', SSIM needs 11 pixels' if c.ssim_weight else ''})", c.loss_stride)
    for name in ("lr", "bias_lr"):
        value = getattr(c, name)
        _need(value is None or (value > 0 and math.isfinite(value)), name, "a positive number", value)
    for name in ("ssim_weight", "smooth_weight", "tv_weight", "mono_weight"):
        value = getattr(c, name)
        _need(value >= 0 and math.isfinite(value), name, ">= 0", value)
    _need(0 < c.val_fraction < 1, "val_fraction", "between 0 and 1 (exclusive)", c.val_fraction)
    for name in ("preview_every", "checkpoint_every"):
        _need(getattr(c, name) >= 1, name, ">= 1", getattr(c, name))
    _need(c.recipe in ("auto", *RECIPES), "recipe", f"one of auto, {', '.join(RECIPES)}", c.recipe)
    _need(c.normalise in ("auto", *NORMALISERS), "normalise", f"one of auto, {', '.join(NORMALISERS)}",
          c.normalise)
    _need(0 <= c.photometric <= 1 and math.isfinite(c.photometric), "photometric", "between 0 and 1",
          c.photometric)
    _need(0 < c.plateau_factor < 1, "plateau_factor", "between 0 and 1", c.plateau_factor)
    _need(c.plateau_patience >= 0, "plateau_patience", ">= 0", c.plateau_patience)
    _validate_files(c)
    _need(c.amp in AMP_CHOICES, "amp", f"one of {', '.join(AMP_CHOICES)}", c.amp)
    try:
        device = check_device(c.device, c.backend)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _need(not c.sync_bn or device.type == "cuda", "sync_bn", "used with a CUDA --device "
          "(SyncBatchNorm has no CPU implementation)", c.device)


def _validate_files(c: TrainConfig) -> None:
    """The settings that name data, files and folders."""
    _need((c.inputs is None) == (c.targets is None), "inputs", "given with --targets", c.inputs or c.targets)
    _need((c.val_inputs is None) == (c.val_targets is None), "val_inputs", "given with --val-targets",
          c.val_inputs or c.val_targets)
    _need(c.demo in DEMO_SETS, "demo", f"one of {', '.join(DEMO_SETS)}", c.demo)
    _need(c.init_from is None or c.head != "direct" or c.init == "identity", "init",
          "identity with --init-from and --head direct", c.init)
    _need(c.init_from is None or Path(c.init_from).is_file(), "init_from", "an existing LUT file",
          c.init_from)
    name = c.experiment
    plain = name not in (None, "", ".", "..") and "/" not in name and os.sep not in name
    _need(plain, "experiment", "a plain name (a folder in <out>/models)", name)
