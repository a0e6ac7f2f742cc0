"""Train the LUT-predicting CNN on (original, graded) pairs: ``python -m img2lut.train``.

With no arguments it trains on the built-in demo data (built on first use, see :mod:`img2lut.demo`) with
the ``default`` preset, sized for a 2-core CPU; ``--inputs DIR --targets DIR`` trains on your own pairs
with the same preset; ``--preset seed`` reproduces the original experiment's settings. Every setting has a
flag; explicit flags override the preset (:mod:`img2lut.config`). The loop and the recipe:
:mod:`img2lut.trainer`; what a run writes, in ``<out>/models/<experiment>/``: :mod:`img2lut.artifacts`.
Ctrl-C stops after the current step and saves a checkpoint from which ``--resume`` continues exactly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lutkern
from lutkern.cli import CommandParser, add_device_flags, console, lut_format_arg, run_command
from lutkern.files import same_file

from . import checkpoint as ckpt
from . import distributed, pair_cache
from .artifacts import check_run_folder
from .config import (
    AMP_CHOICES,
    PRESETS,
    SCHEDULERS,
    TrainConfig,
    UsageError,
    config_from_flags,
    default_experiment,
    model_arguments,
    resume_config,
)
from .data import read_true_lut
from .demo import DEMO_SETS
from .diagnosis import RECIPES
from .image_stats import NORMALISERS
from .model import HEADS, INITS
from .trainer import INTERRUPTED, Trainer
from .training_data import load_training_data

PROG = "python -m img2lut.train"


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add = _PresetFlags(p)
    for group in (_data_flags, _optimizer_flags, _model_flags, _size_and_loss_flags, _run_flags):
        group(add)
    return p


class _PresetFlags:
    """``add(flag, ...)``: an argparse flag whose default is None, so that a flag the user gave can be told
    from the preset's value; its help shows the default preset's value."""

    def __init__(self, parser: argparse.ArgumentParser):
        self.parser, self.defaults = parser, TrainConfig()

    def __call__(self, name: str, *args, help: str | None = None, **kwargs) -> None:
        dest = kwargs.get("dest", name[2:].replace("-", "_"))
        default = getattr(self.defaults, dest, None)
        if default is not None and dest not in ("preset", "device"):
            help = f"{help}; default preset: {default}" if help else f"default preset: {default}"
        self.parser.add_argument(name, *args, help=help, **kwargs)


def _data_flags(add) -> None:
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
    add("--true-lut", dest="truth", metavar="FILE", help="the true LUT to compare the learned one with, "
        "any LUT file (.cube, .3dl, .spi3d, .csp, .clf, ...) (default: truth.cube in the folder holding "
        "--inputs)")
    pair_cache.add_flags(add.parser)


def _optimizer_flags(add) -> None:
    add("--epochs", type=int)
    add("--batch-size", type=int)
    add("--lr", type=float, help="Adam learning rate")
    add("--bias-lr", type=float, help="learning rate of the LUT tables: the shared LUT and the basis LUTs "
        "(the direct head's last bias); the seed preset: the same as --lr")
    add("--scheduler", choices=SCHEDULERS,
        help="cosine decay over the run, or ReduceLROnPlateau on the epoch loss")
    add("--plateau-factor", type=float)
    add("--plateau-patience", type=int)


def _model_flags(add) -> None:
    add("--lut-size", type=int, help="LUT lattice size S (the CNN emits S^3*3 values)")
    add("--interpolation", choices=lutkern.INTERPOLATIONS)
    add("--head", choices=HEADS, help="direct: the seed's Linear to S^3*3 values; basis: K basis LUTs "
        "blended by predicted weights around one shared LUT")
    add("--basis-luts", type=int, help="K, the basis LUTs of --head basis")
    add("--init", choices=INITS, help="where the LUT starts before any fit: the identity, or PyTorch's "
        "default (0.5 everywhere for the basis head)")
    add("--init-from", metavar="FILE",
        help="warm start: every image starts at this LUT (e.g. fitted by python -m img2lut.fit) instead "
        "of the automatic fit (any LUT file); with --head direct implies --init identity and "
        "--bias-lr = --lr")
    add("--fit-first", action=argparse.BooleanOptionalAction, help="start at one LUT fitted directly to "
        "the training pairs (img2lut.fit_lut, seconds)")
    add("--augment", action=argparse.BooleanOptionalAction, help="show the CNN each image in one of its 8 "
        "flips and quarter turns at random (the target stays valid: a LUT acts pixel by pixel)")
    add("--select-best", action=argparse.BooleanOptionalAction, help="keep the epoch with the best mean "
        "validation PSNR (epoch 0: the start LUT alone) as model.pt and lut.<format>")
    add("--recipe", choices=("auto", *RECIPES), help="auto: diagnose the pairs (img2lut.diagnosis) and "
        "choose; one_look: the fitted LUT is the model, no CNN; adaptive: train the CNN")
    add("--normalise", choices=("auto", *NORMALISERS), help="the automatic correction the levels curves "
        "start at, read off each input's statistics (auto: the one the diagnosis finds best)")
    add("--photometric", type=float, help="fraction of training inputs shown under a further exposure / "
        "white-balance error with the same target, where the chosen correction normalises them")
    add("--readout", action=argparse.BooleanOptionalAction, help="adaptive recipe: after the fitted LUT, "
        "start the head at basis weights read linearly off each photo's statistics, chosen across the "
        "training photographs (img2lut.readout)")
    add("--refit-all", action=argparse.BooleanOptionalAction, help="where the fitted LUT alone is kept, "
        "refit it on all pairs (training and validation) at the end")


def _size_and_loss_flags(add) -> None:
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


def _run_flags(add) -> None:
    add("--seed", type=int)
    add_device_flags(add.parser, defaults=False)
    add("--amp", choices=AMP_CHOICES, help="mixed precision: autocast the CNN and the loss to bf16 "
        "or fp16 (fp16 with loss scaling)")
    add("--channels-last", action=argparse.BooleanOptionalAction,
        help="channels-last (NHWC) memory format for the CNN (default: on for CPU, off for CUDA)")
    add("--compile", action="store_true", default=None,
        help="torch.compile the model (checkpoints still hold the plain module)")
    add("--sync-bn", action="store_true", default=None,
        help="under torchrun on GPUs: BatchNorm statistics over the batches of all ranks")
    add("--experiment", help="run name: outputs go to <out>/models/<experiment>/")
    add("--out", help="output root: the run goes to <out>/models/<experiment>/")
    add("--format", dest="lut_format", type=lut_format_arg, metavar="FMT", help="file format of the run's "
        "mean LUT, lut.<format>: cube, 3dl, spi3d, csp, clf")
    add("--resume", nargs="?", const="", metavar="CHECKPOINT",
        help="continue a run: its checkpoint.pt, or the run of --out/--experiment when no path is given")


def _given(args: argparse.Namespace) -> dict:
    """The settings the user passed (every flag's default is None), less those that are not the run's."""
    return {k: v for k, v in vars(args).items()
            if v is not None and k not in ("resume", "cache_dir", "no_cache")}


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _run, errors=(ValueError, distributed.DistributedError))


def _run(args: argparse.Namespace) -> int:
    out = console()
    config, payload, run_dir = _resumed(args) if args.resume is not None else _new(args)
    check_run_folder(run_dir, config, new=payload is None)
    if payload is None and config.init_from is not None:
        read_true_lut(config.init_from, config.lut_size)  # a bad file fails before any image is decoded
    ctx = distributed.setup(config.device)
    try:
        out.quiet = not ctx.is_main
        data = load_training_data(config, out, pair_cache.resolve(args.cache_dir, not args.no_cache))
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        ranks = f" x {ctx.world_size} processes" if ctx.world_size > 1 else ""
        out.print(f"{len(data.train)} training / {len(data.val)} validation pairs from {data.source} "
                  f"({data.grouping}); preset {config.preset}, {config.epochs} epochs on "
                  f"{config.device}{ranks}; outputs in {run_dir}")
        status = Trainer(config, data, run_dir, out, payload, ctx).run()
    except KeyboardInterrupt:  # a second Ctrl-C: the checkpoint on disk is the last complete one
        distributed.cleanup(wait=False)
        print(f"{PROG}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BaseException:
        distributed.cleanup(wait=False)
        raise
    distributed.cleanup()
    return status


def _new(args: argparse.Namespace) -> tuple[TrainConfig, None, Path]:
    config = config_from_flags(_given(args))
    return config, None, Path(config.out) / "models" / config.experiment


def _resumed(args: argparse.Namespace) -> tuple[TrainConfig, dict, Path]:
    """The config, checkpoint and folder of the run ``--resume`` continues, with the allowed changes."""
    out = Path(args.out or TrainConfig.out)
    experiment = args.experiment or default_experiment(args.inputs, args.demo)
    path = Path(args.resume) if args.resume else out / "models" / experiment / ckpt.CHECKPOINT_NAME
    named = out / "models" / experiment
    if args.resume and (args.out or args.experiment) and not same_file(named, path.parent):
        raise UsageError(f"--resume {path} continues the run in {path.parent}, but --out/--experiment "
                         f"name {named}; drop them, or name that run's folder")
    payload = ckpt.load_checkpoint(path)
    try:
        config = resume_config(payload["config"], _given(args))
        ckpt.check_weights(payload)  # before any model is built at the checkpoint's size
        ckpt.check_architecture(payload, model_arguments(config))  # the config builds that model
    except ValueError as exc:  # the file's, or a flag against it
        raise type(exc)(f"{path}: {exc}") from None
    return config, payload, path.parent


if __name__ == "__main__":
    sys.exit(main())
