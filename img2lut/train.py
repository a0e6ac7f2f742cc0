"""Train the LUT-predicting CNN on (original, graded) pairs: ``python -m img2lut.train``.

With no arguments it trains on the built-in demo data (built on first use, see :mod:`img2lut.demo`) with
the ``default`` preset, sized for a 2-core CPU; ``--inputs DIR --targets DIR`` trains on your own pairs
with the same preset; ``--preset seed`` reproduces the original experiment's settings. Every
hyperparameter has a flag; explicit flags override the preset.

The default recipe (docs/generalization.md): pairs cut from one photograph stay on one side of the
train/validation split (``--group-by``); one LUT is first fitted directly to the training pairs
(:func:`img2lut.fit.fit_lut`, seconds), the basis-LUT head starts at it and learns only what differs
from photo to photo, with the same regularizers as the fit; the epoch that did best on the held-out
photos (epoch 0 is the fitted LUT alone) is the model kept.

Outputs, in ``<out>/models/<experiment>/``: ``checkpoint.pt`` (see :mod:`img2lut.checkpoint`; for
``--resume``), ``model.pt`` (the kept model alone, for prediction), ``metrics.csv``, ``loss.png``,
``previews/epoch_NNNN.png``, ``lut.cube`` (the mean of the LUTs predicted for the validation images)
and ``summary.json``. Ctrl-C stops after the current step and saves a checkpoint from which
``--resume`` continues exactly where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import lutkern
from lutkern._atomic import atomic_open
from lutkern._cli import CommandParser, check_device, one_line, warnings_on_one_line
from lutkern._outputs import same_file

from . import checkpoint as ckpt
from . import distributed
from .data import DataError, PairedImages, group_names, load_pairs, pair_files, resize, split_groups
from .demo import DEMO_SETS, ensure_demo
from .fit import fit_lut
from .losses import LossWeights, total_loss
from .metrics import covered_lattice_points, lut_rmse, psnr_from_mse, ssim_value
from .model import HEADS, INITS, ResNetLUTGenerator
from .plots import loss_plot, preview_grid

PROG = "python -m img2lut.train"
SCHEDULERS = ("plateau", "cosine")
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PREVIEW_ROWS = 4
MAX_BATCH = 4096
MAX_IMAGE_SIZE = 8192
# Exit status after Ctrl-C, as a shell reports a process stopped by SIGINT.
INTERRUPTED = 130


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
    truth: str | None = None  # the true LUT, if known; default: truth.cube beside the inputs folder
    epochs: int = 40
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
    init_from: str | None = None  # a .cube the CNN starts at (e.g. from python -m img2lut.fit)
    fit_first: bool = True  # start at a LUT fitted to the training pairs (when no init_from)
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
    # A 33^3 checkpoint is ~680 MB (seconds to write): every 10 epochs, at the end and on Ctrl-C.
    checkpoint_every: int = 10
    seed: int = 0
    device: str = "cpu"
    # Speed options, measured in docs/scaling.md.
    amp: str = "none"  # autocast dtype of the CNN and loss: none, bf16, fp16 (with loss scaling)
    channels_last: bool | None = None  # None: by device, see channels_last_for()
    compile: bool = False
    sync_bn: bool = False  # under torchrun on GPUs: BatchNorm statistics over all ranks' batches
    experiment: str | None = None  # default: "demo" on the demo data, else "pairs"
    out: str = "runs"


PRESETS: dict[str, dict] = {
    # Sized by measurement for a 2-core CPU: see docs/training.md.
    "default": {},
    # The seed experiment: batch 64, LUT 33, lr 1e-2, 500 epochs, 256x256, Adam,
    # ReduceLROnPlateau(factor=0.1, patience=10) on the epoch loss, MSE, PyTorch's initialisation.
    "seed": dict(epochs=500, batch_size=64, lr=1e-2, scheduler="plateau", lut_size=33, image_size=256,
                 bias_lr=None, cnn_size=0, loss_stride=1, tv_weight=0.0, mono_weight=0.0, init="default",
                 head="direct", fit_first=False, select_best=False, augment=False, preview_every=50,
                 checkpoint_every=1),
}
# Settings that may differ when resuming; anything else must match the checkpoint.
RESUMABLE_CHANGES = ("epochs", "device", "preview_every", "checkpoint_every", "amp", "channels_last",
                     "compile", "sync_bn")


class UsageError(ValueError):
    """A bad command line; printed as one line."""


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description=__doc__.split("\n\n")[0])
    # Every default is None so that an explicit flag can be told apart from the preset's value.
    add = p.add_argument
    add("--preset", choices=sorted(PRESETS), help="settings to start from (default: default)")
    add("--demo", choices=sorted(DEMO_SETS), help="the built-in demo set trained on without --inputs: bw "
        "(one black-and-white look) or adaptive (a grade that differs per photo)")
    add("--inputs", help="folder of original images (default: the built-in demo data)")
    add("--targets", help="folder of graded images, paired with --inputs by file name")
    add("--val-inputs", help="folder of validation originals (default: split off --inputs)")
    add("--val-targets", help="folder of validation graded images")
    add("--group-by", metavar="REGEX|default|none", help="which pairs come from one photograph (crops, "
        "exposures), so that validation holds out whole photographs: default drops a trailing counter "
        "from the file name (beach-003 -> beach); a regex's group 'group' (or first group) is the key; "
        "none: every pair its own photo")
    add("--truth", help="the true LUT (.cube) to compare the learned one with "
        "(default: truth.cube in the folder holding --inputs)")
    add("--epochs", type=int)
    add("--batch-size", type=int)
    add("--lr", type=float, help="Adam learning rate")
    add("--bias-lr", type=float, help="learning rate of the last layer's bias, the LUT shared by all "
        "images (the seed preset: the same as --lr)")
    add("--scheduler", choices=SCHEDULERS,
        help="cosine decay over the run, or ReduceLROnPlateau on the epoch loss")
    add("--plateau-factor", type=float)
    add("--plateau-patience", type=int)
    add("--lut-size", type=int, help="LUT lattice size S (the CNN emits S^3*3 values)")
    add("--interpolation", choices=lutkern.reference.apply.INTERPOLATIONS)
    add("--head", choices=HEADS, help="direct: the seed's Linear to S^3*3 values; basis: K basis LUTs "
        "blended by predicted weights around one shared LUT")
    add("--basis-luts", type=int, help="K, the basis LUTs of --head basis")
    add("--init", choices=INITS, help="where the LUT starts before any fit: the identity, or PyTorch's "
        "default (0.5 everywhere for the basis head)")
    add("--init-from", metavar="FILE.cube",
        help="warm start: every image starts at this LUT (e.g. fitted by python -m img2lut.fit) instead "
        "of the automatic fit; with --head direct implies --init identity and --bias-lr = --lr")
    add("--fit-first", action=argparse.BooleanOptionalAction, help="start at one LUT fitted directly to "
        "the training pairs (img2lut.fit_lut, seconds)")
    add("--augment", action=argparse.BooleanOptionalAction, help="show the CNN each image in one of its 8 "
        "flips and quarter turns at random (the target stays valid: a LUT acts pixel by pixel)")
    add("--select-best", action=argparse.BooleanOptionalAction, help="keep the epoch with the best mean "
        "validation PSNR (epoch 0: the start LUT alone) as model.pt and lut.cube")
    add("--image-size", type=int, help="pairs are resized to this square size")
    add("--cnn-size", type=int, help="the CNN sees a thumbnail of this size (0: the whole image)")
    add("--loss-stride", type=int, help="the loss sees every N-th pixel in x and y, at a random offset "
        "(a LUT acts pixel by pixel, so the subsample keeps the colours and costs N^2 times less)")
    add("--ssim-weight", type=float, help="weight of 1-SSIM (data_range=1)")
    add("--smooth-weight", type=float, help="weight of lutkern.smoothness")
    add("--tv-weight", type=float, help="weight of lutkern.total_variation")
    add("--mono-weight", type=float, help="weight of lutkern.monotonicity")
    add("--val-fraction", type=float, help="share of pairs held out for validation")
    add("--preview-every", type=int, help="write previews/epoch_NNNN.png every N epochs")
    add("--checkpoint-every", type=int, help="write the checkpoint every N epochs (and at the end)")
    add("--seed", type=int)
    add("--device", help="cpu, cuda, cuda:1, ... (under torchrun, cuda means cuda:LOCAL_RANK)")
    add("--amp", choices=tuple(AMP_DTYPES), help="mixed precision: autocast the CNN and the loss to bf16 "
        "or fp16 (fp16 with loss scaling)")
    add("--channels-last", action=argparse.BooleanOptionalAction,
        help="channels-last (NHWC) memory format for the CNN (default: on for CPU, off for CUDA)")
    add("--compile", action="store_true", default=None,
        help="torch.compile the model (checkpoints still hold the plain module)")
    add("--sync-bn", action="store_true", default=None,
        help="under torchrun on GPUs: BatchNorm statistics over the batches of all ranks")
    add("--experiment", help="run name: outputs go to <out>/models/<experiment>/")
    add("--out", help="output root (default: runs)")
    add("--resume", nargs="?", const="", metavar="CHECKPOINT",
        help="continue a run: its checkpoint.pt, or the run of --out/--experiment when no path is given")
    defaults = TrainConfig()
    for action in p._actions:
        if action.dest not in ("preset", "help") and getattr(defaults, action.dest, None) is not None:
            shown = f"default preset: {getattr(defaults, action.dest)}"
            action.help = f"{action.help}; {shown}" if action.help else shown
    return p


def _explicit(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if v is not None and k != "resume"}


def validate(config: TrainConfig) -> None:
    """UsageError naming the flag for any setting out of range."""
    def need(ok: bool, flag: str, what: str, value) -> None:
        if not ok:
            raise UsageError(f"{flag} must be {what}, got {value!r}")

    c = config
    need(2 <= c.lut_size <= 256, "--lut-size", "between 2 and 256", c.lut_size)
    need(c.epochs >= 1, "--epochs", ">= 1", c.epochs)
    need(1 <= c.batch_size <= MAX_BATCH, "--batch-size", f"between 1 and {MAX_BATCH}", c.batch_size)
    need(c.lr > 0 and math.isfinite(c.lr), "--lr", "a positive number", c.lr)
    need(16 <= c.image_size <= MAX_IMAGE_SIZE, "--image-size", f"between 16 and {MAX_IMAGE_SIZE}",
         c.image_size)
    # Three stride-2 blocks: below 16 px the last BatchNorm sees too few values per channel.
    need(c.cnn_size == 0 or 16 <= c.cnn_size <= c.image_size, "--cnn-size",
         f"0 or between 16 and --image-size {c.image_size}", c.cnn_size)
    need(c.bias_lr is None or (c.bias_lr > 0 and math.isfinite(c.bias_lr)), "--bias-lr", "a positive number",
         c.bias_lr)
    # SSIM's 11-pixel window must fit in the subsampled image.
    most = c.image_size // 11 if c.ssim_weight else c.image_size
    need(1 <= c.loss_stride <= most, "--loss-stride", f"between 1 and {most} (--image-size {c.image_size}"
         f"{', SSIM needs 11 pixels' if c.ssim_weight else ''})", c.loss_stride)
    for name in ("ssim_weight", "smooth_weight", "tv_weight", "mono_weight"):
        value = getattr(c, name)
        need(value >= 0 and math.isfinite(value), "--" + name.replace("_", "-"), ">= 0", value)
    need(0 < c.val_fraction < 1, "--val-fraction", "between 0 and 1 (exclusive)", c.val_fraction)
    need(c.preview_every >= 1, "--preview-every", ">= 1", c.preview_every)
    need(c.checkpoint_every >= 1, "--checkpoint-every", ">= 1", c.checkpoint_every)
    need(0 < c.plateau_factor < 1, "--plateau-factor", "between 0 and 1", c.plateau_factor)
    need(c.plateau_patience >= 0, "--plateau-patience", ">= 0", c.plateau_patience)
    need((c.inputs is None) == (c.targets is None), "--inputs/--targets", "given together",
         c.inputs or c.targets)
    need(c.init_from is None or c.head != "direct" or c.init == "identity", "--init",
         "identity with --init-from and --head direct", c.init)
    need(1 <= c.basis_luts <= 256, "--basis-luts", "between 1 and 256", c.basis_luts)
    need(c.demo in DEMO_SETS, "--demo", f"one of {', '.join(DEMO_SETS)}", c.demo)
    name = c.experiment
    plain = name not in (None, "", ".", "..") and "/" not in name and os.sep not in name
    need(plain, "--experiment", "a plain name (a folder in <out>/models)", c.experiment)
    need(c.init_from is None or Path(c.init_from).is_file(), "--init-from", "an existing .cube file",
         c.init_from)
    need((c.val_inputs is None) == (c.val_targets is None), "--val-inputs/--val-targets", "given together",
         c.val_inputs or c.val_targets)
    try:
        device = check_device(c.device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    need(c.amp in AMP_DTYPES, "--amp", f"one of {', '.join(AMP_DTYPES)}", c.amp)
    need(not c.sync_bn or device.type == "cuda", "--sync-bn", "used with a CUDA --device "
         "(SyncBatchNorm has no CPU implementation)", c.device)


def _default_experiment(inputs: str | None, demo: str | None) -> str:
    if inputs is not None:
        return "pairs"
    return "demo" if demo in (None, "bw") else f"demo-{demo}"


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    given = _explicit(args)
    preset = given.get("preset", "default")
    config = TrainConfig(**{**PRESETS[preset], **given, "preset": preset})
    if config.head == "direct" and (config.init_from is not None or config.fit_first):
        if "init" not in given:
            config.init = "identity"  # a warm start needs the last weight scaled down, as this init does
        if "bias_lr" not in given:
            config.bias_lr = None  # the shared LUT is already fitted: a large lr knocks it off (docs/fit.md)
    if config.experiment is None:
        config.experiment = _default_experiment(config.inputs, config.demo)
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


def resume_config(args: argparse.Namespace, payload: dict) -> TrainConfig:
    """The checkpoint's config with the allowed changes; UsageError for any other differing flag."""
    try:
        saved = TrainConfig(**payload["config"])
    except TypeError as exc:  # not a dict, or keys this version does not know
        raise ckpt.CheckpointError(f"the checkpoint's training config is damaged ({exc})") from None
    wrong = [f"{f.name}={getattr(saved, f.name)!r:.40}" for f in dataclasses.fields(TrainConfig)
             if not _of_type(getattr(saved, f.name), f.type)]
    if wrong:
        raise ckpt.CheckpointError(f"the checkpoint's training config is damaged ({', '.join(wrong)})")
    changes = {}
    for key, value in _explicit(args).items():
        if key in RESUMABLE_CHANGES:
            changes[key] = value
        elif key not in ("out", "experiment") and getattr(saved, key) != value:
            flag = "--" + key.replace("_", "-")
            allowed = ", ".join("--" + k.replace("_", "-") for k in RESUMABLE_CHANGES)
            raise UsageError(f"{flag} {value} differs from the resumed run's {getattr(saved, key)!r}; "
                             f"only {allowed} may change")
    config = dataclasses.replace(saved, **changes)
    validate(config)
    return config


@dataclass
class Data:
    train: PairedImages
    val: PairedImages
    train_thumbs: torch.Tensor
    val_thumbs: torch.Tensor
    source: str
    truth: torch.Tensor | None  # (S,S,S,3) sampled at the learned LUT's lattice
    truth_path: str | None
    grouping: str  # how validation was held out, in words (for the summary)
    val_truths: torch.Tensor | None = None  # (N_val,S,S,S,3): the true LUT of each validation pair


def truth_at_lattice(path: Path, lut_size: int) -> torch.Tensor:
    """The whole transform of the ``.cube`` at ``path`` (domain, shaper, 3D table) sampled at the learned
    LUT's lattice ``(S,S,S,3)`` (the table itself when it is a plain 3D table of that size).

    Raises DataError naming the file when it cannot be read.
    """
    try:
        cube = lutkern.read_cube(path)
    except (OSError, ValueError) as exc:  # CubeFormatError is a ValueError
        raise DataError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
    grid = lutkern.identity_lut(lut_size, dtype=torch.float64).permute(3, 0, 1, 2).reshape(3, -1, lut_size)
    out = cube.apply(grid, backend="torch")
    return out.reshape(3, lut_size, lut_size, lut_size).permute(1, 2, 3, 0).float().contiguous()


def load_data(config: TrainConfig, console: Console) -> Data:
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
    if truth is None and (Path(inputs).parent / "truth.cube").is_file():
        truth = str(Path(inputs).parent / "truth.cube")
    # The true LUT is read before any image is decoded: a bad file fails at once.
    truth_lut = truth_at_lattice(Path(truth), config.lut_size) if truth is not None else None
    with console.status("decoding images..."):
        pairs = load_pairs(pair_files(inputs, targets), config.image_size)
        if val_inputs is not None:
            train, val = pairs, load_pairs(pair_files(val_inputs, val_targets), config.image_size)
            grouping = f"validation pairs from {val_inputs}"
        else:
            groups = group_names(pairs.names, config.group_by)
            train_idx, val_idx = split_groups(groups.groups, config.val_fraction)
            train, val = pairs.subset(train_idx), pairs.subset(val_idx)
            held = len({groups.groups[i] for i in val_idx})
            grouping = (f"{held} of {groups.count} photographs held out whole ({groups.rule}): "
                        f"{_names(sorted({groups.groups[i] for i in val_idx}))}")
    val_truths = demo.true_luts(val.names, config.lut_size) if demo is not None else None
    cnn = config.cnn_size or config.image_size
    return Data(train, val, resize(train.inputs, cnn), resize(val.inputs, cnn), source, truth_lut, truth,
                grouping, val_truths)


def _names(names: list[str], most: int = 8) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def make_optimizer(model: ResNetLUTGenerator, config: TrainConfig, device: torch.device):
    # Adam moves a parameter by about lr per step whatever its gradient's size, and a LUT entry's
    # gradient is sparse (only pixels near it): the LUT tables (the shared LUT, the basis LUTs) may need
    # a larger lr than the network.
    tables = [model.shared_lut()] + ([model.basis] if model.head == "basis" else [])
    ids = {id(t) for t in tables}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids]},
              {"params": tables, "lr": config.bias_lr or config.lr}]
    # The fused Adam is ~7x faster on CPU for the 55M-parameter last layer (S=33), same update rule.
    opt = torch.optim.Adam(groups, lr=config.lr, fused=device.type in ("cpu", "cuda"))
    if config.scheduler == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=config.plateau_factor, patience=config.plateau_patience)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    return opt, sched


@dataclass
class Evaluation:
    """A model on a set of pairs, in eval mode: ``mse`` over all pixels, ``image_mse`` ``(N,)`` per
    image, the ``mean_lut`` ``(S,S,S,3)`` of the predicted LUTs, ``outputs`` ``(N,3,H,W)`` and, when
    asked for, the predicted ``luts`` ``(N,S,S,S,3)``."""

    mse: float
    image_mse: torch.Tensor
    mean_lut: torch.Tensor
    outputs: torch.Tensor
    luts: torch.Tensor | None = None

    @property
    def image_psnr(self) -> torch.Tensor:
        return torch.tensor([psnr_from_mse(float(m)) for m in self.image_mse])


@torch.no_grad()
def evaluate(model: ResNetLUTGenerator, images: PairedImages, thumbs: torch.Tensor, batch_size: int,
             device: torch.device, keep_luts: bool = False) -> Evaluation:
    """Run ``model`` (in eval mode) on ``images``, the CNN seeing ``thumbs``."""
    was_training = model.training
    model.eval()
    outputs, luts, image_mse, lut_sum = [], [], [], 0.0
    for start in range(0, len(images), batch_size):
        sl = slice(start, start + batch_size)
        out, lut = model(thumbs[sl].to(device), full=images.inputs[sl].to(device))
        image_mse.append((out - images.targets[sl].to(device)).double().square().mean((1, 2, 3)).cpu())
        lut_sum = lut_sum + lut.double().sum(0)
        outputs.append(out.cpu())
        if keep_luts:
            luts.append(lut.float().cpu())
    model.train(was_training)
    image_mse = torch.cat(image_mse)
    return Evaluation(float(image_mse.mean()), image_mse, (lut_sum / len(images)).float().cpu(),
                      torch.cat(outputs), torch.cat(luts) if keep_luts else None)


def _write_metrics(run_dir: Path, history: list[dict]) -> None:
    with atomic_open(run_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        for row in history:
            writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])
                             for k in HISTORY_FIELDS})
    epochs = [r["epoch"] for r in history]
    loss_plot(run_dir / "loss.png", epochs, {"train loss": [r["train_loss"] for r in history],
                                             "val MSE": [r["val_mse"] for r in history]})


def _write_preview(path: Path, data: Data, outputs: torch.Tensor) -> None:
    n = min(PREVIEW_ROWS, len(data.val))
    preview_grid(path, [(data.val.inputs[i], data.val.targets[i], outputs[i]) for i in range(n)])


class _StopFlag:
    """SIGINT sets a flag the loop checks between steps (a half-done optimizer step is never saved);
    a second Ctrl-C interrupts immediately."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._previous)


def channels_last_for(config: TrainConfig, device: torch.device) -> bool:
    """``--channels-last``, or when not given: on for the CPU, where it measured faster (docs/scaling.md),
    off for CUDA, where it is not measured yet."""
    return device.type == "cpu" if config.channels_last is None else config.channels_last


def dihedral(images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """``images`` ``(B,3,h,h)`` each turned by ``codes[i] % 4`` quarter turns, then mirrored if
    ``codes[i] >= 4`` (the 8 symmetries of a square)."""
    out = images.clone()
    for code in codes.unique().tolist():
        sel = codes == code
        turned = images[sel].rot90(code % 4, dims=(2, 3))
        out[sel] = turned.flip(3) if code >= 4 else turned
    return out


def _rng_state(aug: torch.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "aug": aug.get_state()}


def model_arguments(config: TrainConfig) -> dict:
    """The :class:`ResNetLUTGenerator` arguments of a run (what its checkpoints' model_config holds)."""
    return {"lut_size": config.lut_size, "interpolation": config.interpolation, "init": config.init,
            "head": config.head, "basis_luts": config.basis_luts}


HISTORY_FIELDS = ("epoch", "train_loss", "train_mse", "val_mse", "val_psnr", "lr", "seconds")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _restore(saved: dict, fresh: dict, opt, sched, scaler, aug: torch.Generator, config: TrainConfig) -> dict:
    """Load a checkpoint's training ``saved`` state into the optimizer, scheduler, loss scaler and generators
    and return the loop's progress (the keys of ``fresh``). Every part is checked first: a damaged file is
    an error here, never a crash (a wrong-sized Adam moment makes the fused step write out of bounds) or
    a silently different run."""
    if set(saved["scheduler"]) != set(sched.state_dict()):
        raise ValueError(f"scheduler state {sorted(saved['scheduler'])} is not a {config.scheduler} "
                         "scheduler's")
    if not isinstance(saved["scaler"], dict):
        raise ValueError(f"loss scaler state {saved['scaler']!r:.60}")
    opt.load_state_dict(saved["optimizer"])
    for group in opt.param_groups:
        for param in group["params"]:
            for key, value in opt.state.get(param, {}).items():
                if key != "step" and (not isinstance(value, torch.Tensor) or value.shape != param.shape):
                    raise ValueError(f"optimizer {key} of shape {getattr(value, 'shape', value)} for a "
                                     f"parameter of shape {tuple(param.shape)}")
    sched.load_state_dict(saved["scheduler"])
    if config.scheduler == "cosine":
        sched.T_max = config.epochs
    torch.set_rng_state(saved["rng"]["torch"])
    aug.set_state(saved["rng"]["aug"])
    if saved["scaler"]:
        scaler.load_state_dict(saved["scaler"])
    state = {k: saved.get(k) if k == "best" else saved[k] for k in fresh}
    if not all(isinstance(state[k], int) and state[k] >= 0 for k in ("epoch", "step")):
        raise ValueError(f"epoch {state['epoch']!r}, step {state['step']!r}")
    if not all(_number(state[k]) and math.isfinite(state[k]) for k in ("loss_sum", "mse_sum", "seconds")):
        raise ValueError(f"loss sums and time {[state[k] for k in ('loss_sum', 'mse_sum', 'seconds')]!r:.80}")
    history = state["history"]
    if not isinstance(history, list) or not all(
            isinstance(row, dict) and all(_number(row.get(k)) for k in HISTORY_FIELDS) for row in history):
        raise ValueError(f"metric history {history!r:.80}")
    best = state["best"]
    if best is not None and not (isinstance(best, dict) and isinstance(best.get("epoch"), int)
                                 and isinstance(best.get("psnr"), float) and "model" in best):
        raise ValueError(f"the kept epoch's record is {type(best).__name__} {best!r:.80}")
    return state


def train(config: TrainConfig, data: Data, run_dir: Path, console: Console,
          payload: dict | None = None, ctx: distributed.Dist | None = None) -> int:
    """Run (or continue from ``payload``) the training loop; returns the exit status.

    ``ctx``: this process's rank (:func:`img2lut.distributed.setup`); None = a single process. Every rank
    trains on its share of each epoch (``config.batch_size`` images per rank and step) and validates on the
    whole validation set; only rank 0 writes files.
    """
    ctx = ctx or distributed.Dist(device=torch.device(config.device))
    device = ctx.device
    torch.manual_seed(config.seed)
    model = ResNetLUTGenerator(**model_arguments(config))
    if payload is None:
        start = start_lut(config, data, console)
        if start is not None:
            model.start_at(start)
    layout = torch.channels_last if channels_last_for(config, device) else torch.preserve_format
    model = model.to(device, memory_format=layout)
    opt, sched = make_optimizer(model, config, device)
    # This rank's share of each epoch, shuffled by (seed, epoch) alone, so a resumed epoch replays its
    # order. The loss subsample offsets (aug) are the same on every rank: rank 0's saved state serves all.
    sampler = distributed.make_sampler(ctx, len(data.train), config.seed)
    aug = torch.Generator()
    aug.manual_seed(config.seed + 1)
    amp = AMP_DTYPES[config.amp]
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    # Progress: `epoch` is the epoch in progress, `step` the steps of it already done.
    # `best`: the epoch with the best mean validation PSNR so far and its weights (--select-best).
    state = {"epoch": 0, "step": 0, "loss_sum": 0.0, "mse_sum": 0.0, "seconds": 0.0, "history": [],
             "best": None}
    if payload is not None:
        model.load_state_dict(payload["model"])
        try:
            state = _restore(payload["state"], state, opt, sched, scaler, aug, config)
            if state["best"] is not None:
                ckpt.check_weights(payload, state["best"]["model"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            raise ckpt.CheckpointError(f"{run_dir / ckpt.CHECKPOINT_NAME}: the training state is damaged, "
                                       f"cannot resume ({type(exc).__name__}: {exc})") from None
    # `net` runs the steps (DDP-wrapped under torchrun, compiled with --compile); `model` is evaluated and
    # saved, so checkpoints never carry a `module.` or `_orig_mod.` prefix.
    net = distributed.wrap(model, ctx, config.sync_bn)
    if config.compile:
        net = torch.compile(net)
    weights = LossWeights(config.ssim_weight, config.smooth_weight, config.tv_weight, config.mono_weight)
    steps_per_epoch = math.ceil(len(sampler) / config.batch_size)
    stride = config.loss_stride
    ckpt_path = run_dir / ckpt.CHECKPOINT_NAME

    def save() -> None:
        if not ctx.is_main:
            return
        full = {**state, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(), "rng": _rng_state(aug)}
        ckpt.save_checkpoint(ckpt_path, model=model, config=dataclasses.asdict(config), state=full)

    def consider(epoch: int, result: Evaluation) -> None:
        score = float(result.image_psnr.mean())
        if config.select_best and (state["best"] is None or score > state["best"]["psnr"]):
            weights = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
            state["best"] = {"epoch": epoch, "psnr": score, "model": weights}

    if state["epoch"] == 0 and state["step"] == 0 and config.select_best:
        consider(0, evaluate(model, data.val, data.val_thumbs, config.batch_size, device))
    model.train()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}  val PSNR {task.fields[psnr]}"), TimeRemainingColumn())
    last = state["history"][-1] if state["history"] else None
    psnr_text = f"{last['val_psnr']:.2f} dB" if last else "-"
    stopped = False
    with _StopFlag() as stop, Progress(*columns, console=console) as progress:
        task = progress.add_task("training", total=config.epochs * steps_per_epoch,
                                 completed=state["epoch"] * steps_per_epoch + state["step"],
                                 loss="-", psnr=psnr_text)
        while state["epoch"] < config.epochs and not stopped:
            tick = time.perf_counter()
            sampler.set_epoch(state["epoch"])
            perm = torch.tensor(list(sampler))
            for step in range(state["step"], steps_per_epoch):
                idx = perm[step * config.batch_size:(step + 1) * config.batch_size]
                x, y = data.train.inputs[idx], data.train.targets[idx]
                if stride > 1:
                    dy, dx = torch.randint(0, stride, (2,), generator=aug).tolist()
                    x, y = x[..., dy::stride, dx::stride], y[..., dy::stride, dx::stride]
                thumbs = data.train_thumbs[idx]
                if config.augment:  # a fixed count per step keeps the ranks' generators in step
                    codes = torch.randint(0, 8, (config.batch_size,), generator=aug)
                    thumbs = dihedral(thumbs, codes[:len(idx)])
                # Under autocast the LUT comes out in bf16/fp16, which the LUT kernels take with fp32 images.
                with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    out, lut = net(thumbs.to(device), full=x.to(device))
                    loss, parts = total_loss(out, y.to(device), lut, weights)
                value = float(loss.detach())
                if distributed.any_rank(ctx, not math.isfinite(value)):  # never step on, or save, a NaN
                    kept = f"kept the checkpoint {ckpt_path}" if ckpt_path.exists() else "no checkpoint yet"
                    progress.console.print(f"{PROG}: error: the loss is not finite ({value}) at epoch "
                                           f"{state['epoch'] + 1}, step {step + 1}; stopped, {kept}",
                                           soft_wrap=True, markup=False, highlight=False)
                    return 2
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                state["loss_sum"] += value
                state["mse_sum"] += parts["mse"]
                state["step"] = step + 1
                progress.update(task, advance=1, loss=f"{value:.2e}")
                if distributed.any_rank(ctx, stop.requested):  # all ranks stop at the same step
                    stopped = True
                    break
            state["seconds"] += time.perf_counter() - tick
            if stopped:
                break
            epoch = state["epoch"] + 1
            train_loss, train_mse = distributed.all_reduce_mean(
                ctx, [state["loss_sum"] / steps_per_epoch, state["mse_sum"] / steps_per_epoch])
            result = evaluate(model, data.val, data.val_thumbs, config.batch_size, device)
            val_mse, outputs = result.mse, result.outputs
            consider(epoch, result)
            lr = opt.param_groups[0]["lr"]
            if config.scheduler == "plateau":
                sched.step(train_loss)
            else:
                sched.step()
            state["history"].append({"epoch": epoch, "train_loss": train_loss,
                                     "train_mse": train_mse, "val_mse": val_mse,
                                     "val_psnr": psnr_from_mse(val_mse), "lr": lr,
                                     "seconds": state["seconds"]})
            state.update(epoch=epoch, step=0, loss_sum=0.0, mse_sum=0.0)
            if ctx.is_main:
                _write_metrics(run_dir, state["history"])
                if epoch % config.preview_every == 0 or epoch == config.epochs:
                    _write_preview(run_dir / "previews" / f"epoch_{epoch:04d}.png", data, outputs)
            if epoch % config.checkpoint_every == 0 or epoch == config.epochs:
                save()
            psnr_text = f"{psnr_from_mse(val_mse):.2f} dB"
            progress.update(task, psnr=psnr_text)
            progress.console.log(f"epoch {epoch}/{config.epochs}  train loss {train_loss:.3e}  "
                                 f"val PSNR {psnr_text}  lr {lr:.2e}  {state['seconds']:.0f} s")
    if stopped:
        # Save the ranks' mean partial sums: every rank resumes from them, and the epoch's mean stays exact.
        state["loss_sum"], state["mse_sum"] = distributed.all_reduce_mean(
            ctx, [state["loss_sum"], state["mse_sum"]])
        save()
        console.print(f"stopped at epoch {state['epoch'] + 1}, step {state['step']}; saved {ckpt_path}; "
                      f"continue with: {PROG} --resume {ckpt_path}")
        return INTERRUPTED
    if ctx.is_main:
        _finish(model, config, data, run_dir, state, device, console)
    return 0


def start_lut(config: TrainConfig, data: Data, console: Console) -> torch.Tensor | None:
    """The LUT ``(S,S,S,3)`` a new run starts at: ``--init-from``'s, else (``--fit-first``) one fitted to
    the training pairs, else None (the model's own init)."""
    if config.init_from is not None:
        return truth_at_lattice(Path(config.init_from), config.lut_size)
    if not config.fit_first:
        return None
    # Small sets need fewer pixels per step than fit_lut's default sample: never more than they hold.
    pixels = min(data.train.inputs[:, 0].numel(), 1 << 16)
    fitted = fit_lut(data.train.inputs, data.train.targets, lut_size=config.lut_size,
                     interpolation=config.interpolation, seed=config.seed, batch_pixels=pixels,
                     progress=console.is_terminal)
    console.print(f"first stage: one LUT fitted to the {len(data.train)} training pairs in "
                  f"{fitted.seconds:.1f} s; the CNN starts there")
    return fitted.lut


def _finish(model: ResNetLUTGenerator, config: TrainConfig, data: Data, run_dir: Path, state: dict,
            device: torch.device, console: Console) -> None:
    """Keep the best epoch (--select-best), write model.pt, lut.cube (the mean LUT over the validation
    images) and summary.json."""
    kept = state["epoch"]
    if config.select_best and state["best"] is not None:
        model.load_state_dict(state["best"]["model"])
        kept = state["best"]["epoch"]
    ckpt.save_checkpoint(run_dir / ckpt.MODEL_NAME, model=model, config=dataclasses.asdict(config))
    result = evaluate(model, data.val, data.val_thumbs, config.batch_size, device,
                      keep_luts=data.val_truths is not None)
    mean_lut, psnr = result.mean_lut, result.image_psnr
    title = f"img2lut {config.experiment}: mean predicted LUT over {len(data.val)} validation images"
    lutkern.write_cube(run_dir / "lut.cube", mean_lut, title=title)
    summary = {
        "experiment": config.experiment,
        "data": data.source,
        "validation": data.grouping,
        "train_pairs": len(data.train),
        "val_pairs": len(data.val),
        "epochs": state["epoch"],
        "kept_epoch": kept,
        "train_seconds": round(state["seconds"], 1),
        "val_mse": result.mse,
        "val_psnr": psnr_from_mse(result.mse),
        "val_psnr_mean_image": float(psnr.mean()),
        "val_psnr_worst_image": float(psnr.min()),
        "val_worst_image": data.val.names[int(psnr.argmin())],
        "val_ssim": ssim_value(result.outputs, data.val.targets),
        "model": f"{ckpt.MODEL_NAME}: the kept model alone, for img2lut.predict / evaluate / load",
        "lut_cube": "lut.cube: the mean of the LUTs predicted for the validation images",
    }
    if data.truth is not None:
        covered = covered_lattice_points(data.train.inputs, config.lut_size)
        summary.update({
            "truth": data.truth_path,
            "lut_rmse_all": lut_rmse(mean_lut, data.truth),
            "lut_rmse_covered": lut_rmse(mean_lut, data.truth, covered),
            "covered_fraction": float(covered.float().mean()),
        })
    if data.val_truths is not None:
        truth_out = lutkern.apply_lut(data.val.inputs, data.val_truths, interpolation=config.interpolation)
        ceiling = torch.tensor([psnr_from_mse(float(m)) for m in
                                (truth_out - data.val.targets).double().square().mean((1, 2, 3))])
        summary.update({
            "true_luts_psnr_mean_image": float(ceiling.mean()),
            "true_luts_psnr_worst_image": float(ceiling.min()),
            "lut_rmse_per_image": float((result.luts - data.val_truths).square().mean((1, 2, 3, 4))
                                        .sqrt().mean()),
        })
    with atomic_open(run_dir / "summary.json", "w") as f:
        f.write(json.dumps(summary, indent=2) + "\n")
    console.print(f"validation: {data.grouping}; kept epoch {kept} of {state['epoch']}")
    line = (f"done: val PSNR {summary['val_psnr']:.2f} dB (per image: mean "
            f"{summary['val_psnr_mean_image']:.2f}, worst {summary['val_psnr_worst_image']:.2f}), "
            f"SSIM {summary['val_ssim']:.4f}")
    if data.val_truths is not None:
        line += f"; the true per-image LUTs reach {summary['true_luts_psnr_mean_image']:.2f} dB"
    if data.truth is not None:
        line += (f", LUT RMSE {summary['lut_rmse_all']:.4f} (all) / {summary['lut_rmse_covered']:.4f} "
                 f"(covered, {100 * summary['covered_fraction']:.0f}% of the lattice)")
    console.print(line)
    console.print(f"outputs in {run_dir}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings_on_one_line(PROG):
        return _run(args)


# What a run writes into its folder (previews/ holds epoch_NNNN.png).
RUN_FILES = (ckpt.CHECKPOINT_NAME, ckpt.MODEL_NAME, "metrics.csv", "loss.png", "lut.cube", "summary.json",
             "previews")


def check_run_folder(run_dir: Path, config: TrainConfig, new: bool) -> None:
    """UsageError unless the run may write its files into ``run_dir``: no input (a pair folder, the true or
    start LUT) inside it or among its files, and for a new run, no file of another run there."""
    inputs = [config.inputs, config.targets, config.val_inputs, config.val_targets, config.truth,
              config.init_from]
    folder = run_dir.resolve()
    for given in filter(None, inputs):
        path = Path(given).resolve()
        if path == folder or folder in path.parents or any(same_file(run_dir / n, given) for n in RUN_FILES):
            raise UsageError(f"refusing to write the run into {run_dir}: it holds the input {given}")
    if new and (run_dir / ckpt.CHECKPOINT_NAME).exists():
        raise UsageError(f"{run_dir} already holds a run: add --resume to continue it, "
                         "or --experiment NAME for a new one")
    if new and (found := [n for n in RUN_FILES if os.path.lexists(run_dir / n)]):
        raise UsageError(f"{run_dir} already holds {', '.join(found)} (of another run?): never overwritten; "
                         "choose another --experiment, or move them away")


def _run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        if args.resume is not None:
            out = Path(args.out or TrainConfig.out)
            experiment = args.experiment or _default_experiment(args.inputs, args.demo)
            path = Path(args.resume) if args.resume else out / "models" / experiment / ckpt.CHECKPOINT_NAME
            run_dir = path.parent
            named = out / "models" / experiment
            if args.resume and (args.out or args.experiment) and not same_file(named, run_dir):
                raise UsageError(f"--resume {path} continues the run in {run_dir}, but --out/--experiment "
                                 f"name {named}; drop them, or name that run's folder")
            payload = ckpt.load_checkpoint(path)
            try:
                config = resume_config(args, payload)
                ckpt.check_weights(payload)  # before any model is built at the checkpoint's size
                ckpt.check_architecture(payload, model_arguments(config))  # the config builds that model
            except (ckpt.CheckpointError, UsageError) as exc:  # the file's, or a flag against it
                raise type(exc)(f"{path}: {exc}") from None
        else:
            payload = None
            config = config_from_args(args)
            run_dir = Path(config.out) / "models" / config.experiment
        check_run_folder(run_dir, config, new=payload is None)
        if payload is None and config.init_from is not None:
            truth_at_lattice(Path(config.init_from), config.lut_size)  # a bad file fails before decoding
        ctx = distributed.setup(config.device)
        console.quiet = not ctx.is_main
        data = load_data(config, console)
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        console.print(f"{len(data.train)} training / {len(data.val)} validation pairs from {data.source} "
                      f"({data.grouping}); "
                      f"preset {config.preset}, {config.epochs} epochs on {config.device}"
                      + (f" x {ctx.world_size} processes" if ctx.world_size > 1 else "")
                      + f"; outputs in {run_dir}")
        status = train(config, data, run_dir, console, payload, ctx)
        distributed.cleanup()
        return status
    except (UsageError, DataError, ckpt.CheckpointError, distributed.DistributedError) as exc:
        distributed.cleanup(wait=False)
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C: the checkpoint on disk is the last complete one
        distributed.cleanup(wait=False)
        print(f"{PROG}: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
