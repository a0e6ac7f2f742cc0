"""Fit one global LUT directly to (original, graded) image pairs: ``python -m img2lut.fit --inputs DIR
--targets DIR --out FILE.cube``.

``--out`` may name any 3D LUT format (``.cube``, ``.3dl``, ``.spi3d``, ``.csp``, ``.clf``: the extension, or
``--format``, chooses).

For a global look no CNN is needed: one LUT, fitted in seconds (:func:`img2lut.fitting.fit_lut`), pairs
matched by file name, whole photographs held out for validation as in training (``--group-by``). Beside
the ``.cube`` goes its picture (:mod:`lutkern.show`, with the lattice points the pairs covered).
Weights and defaults were chosen on held-out photos: docs/fit.md.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from pathlib import Path

import torch

import lutkern
from lutkern.cli import (
    LUT_3D_FORMATS,
    CommandParser,
    add_device_flags,
    add_format_flag,
    check_device,
    console,
    int_in,
    run_command,
)
from lutkern.files import check_output
from lutkern.show import lut_picture, save_picture

from . import pair_cache
from .data import (
    DataError,
    check_held_out,
    check_pair_folders,
    group_names,
    pair_files,
    split_groups,
)
from .fitting import check_fit_settings, fit_lut, image_psnr
from .metrics import COVERED_WEIGHT
from .pair_loading import load_sets
from .plots import preview_grid

PROG = "python -m img2lut.fit"
PREVIEW_ROWS = 4
_FIT_DEFAULTS = {k: p.default for k, p in inspect.signature(fit_lut).parameters.items()}


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description=__doc__.split("\n\n")[0],
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = p.add_argument
    add("--inputs", required=True, help="folder of original images")
    add("--targets", required=True, help="folder of graded images, paired with --inputs by file name")
    add("--out", required=True, help="the LUT file to write (.cube, .3dl, .spi3d, .csp, .clf; its folder "
        "must exist), and beside it the LUT's picture, the same name with .png")
    add("--val-inputs", help="folder of validation originals (default: split off --inputs by --val-fraction)")
    add("--val-targets", help="folder of validation graded images")
    add("--val-fraction", type=float, default=0.1, help="share of pairs held out for validation (0: none)")
    add("--group-by", default="default", metavar="REGEX|default|none", help="which pairs come from one "
        "photograph, held out together (as python -m img2lut.train --group-by)")
    add("--image-size", type=int_in(1, 8192), default=256,
        help="pairs are resized to this square size, as for training")

    def tuning(flag: str, kind, help: str | None = None, **kw) -> None:
        """A flag whose default is fit_lut's own (one source of truth)."""
        add(flag, type=kind, default=_FIT_DEFAULTS[flag[2:].replace("-", "_")], help=help, **kw)

    tuning("--lut-size", int, "LUT lattice size D")
    tuning("--interpolation", str, "how the LUT is applied", choices=lutkern.INTERPOLATIONS)
    tuning("--smooth-weight", float, "weight of lutkern.smoothness")
    tuning("--tv-weight", float, "weight of lutkern.total_variation")
    tuning("--mono-weight", float, "weight of lutkern.monotonicity")
    tuning("--steps", int, "Adam steps")
    tuning("--lr", float, "Adam learning rate (cosine-decayed)")
    tuning("--batch-pixels", int, "pixels sampled from all pairs per step")
    tuning("--seed", int, "seeds the pixel sampling")
    add("--threads", type=int_in(1, os.cpu_count() or 1), default=1, help="torch CPU threads, at most the "
        "machine's cores (1 measured fastest on a busy 2-core machine, see docs/fit.md)")
    add("--preview", help="also write a PNG grid: input | target | fitted, for a few validation pairs")
    add("--title", help="the LUT's title (.cube TITLE, .clf name, a comment in .3dl/.csp); the output file "
        "name when omitted")
    add_format_flag(p, default=None, what=" of --out (it must agree with the extension)")
    add("--overwrite", action="store_true", help="replace an existing --out/--preview file (never an input)")
    pair_cache.add_flags(p)
    add_device_flags(p)
    return p


def picture_path(out: str | Path) -> Path:
    """The picture written beside the ``.cube`` (:mod:`lutkern.show`): its name with ``.png``."""
    return Path(out).with_suffix(".png")


def _check_outputs(args: argparse.Namespace) -> None:
    """ValueError unless --out and --preview may be written: two files, none of the pairs, no existing
    file without --overwrite."""
    folders = [(args.inputs, args.targets)]
    if args.val_inputs is not None and args.val_targets is not None:
        folders.append((args.val_inputs, args.val_targets))
    inputs = [f for ins, tgs in folders for p in pair_files(ins, tgs) for f in (p.input, p.target)]
    if args.preview is not None and Path(args.preview).resolve() in (Path(args.out).resolve(),
                                                                     picture_path(args.out).resolve()):
        raise ValueError(f"--preview {args.preview} is --out or its picture")
    ext = Path(args.out).suffix.lower()
    if ext not in LUT_3D_FORMATS:
        raise ValueError(f"--out {args.out}: the file to write must end in one of "
                         f"{', '.join(LUT_3D_FORMATS)}")
    if args.format is not None and args.format != ext:
        raise ValueError(f"--out {args.out} ends in {ext} but --format is {args.format}")
    if not Path(args.out).parent.is_dir():
        raise ValueError(f"{args.out}: the folder {Path(args.out).parent} does not exist")
    for path in (args.out, picture_path(args.out), args.preview):
        if path is not None:
            check_output(path, inputs, overwrite=args.overwrite)


def _load(args: argparse.Namespace):
    """``(train, val)`` :class:`~img2lut.data.PairedImages`; val is None without validation pairs."""
    if (args.val_inputs is None) != (args.val_targets is None):
        raise DataError("--val-inputs and --val-targets go together")
    check_pair_folders(args.inputs, args.targets)
    if args.val_inputs is not None:
        check_pair_folders(args.val_inputs, args.val_targets, what="val-")
    cache = pair_cache.resolve(args.cache_dir, not args.no_cache)
    folders = [(args.inputs, args.targets)] + ([(args.val_inputs, args.val_targets)]
                                              if args.val_inputs is not None else [])
    sets = load_sets([pair_files(*f) for f in folders], args.image_size, console(), cache)
    pairs = sets[0]
    if args.val_inputs is not None:
        val = sets[1]
        check_held_out(pairs, val, args.inputs, args.val_inputs)
        return pairs, val
    if args.val_fraction == 0:
        return pairs, None
    train_idx, val_idx = split_groups(group_names(pairs.names, args.group_by).groups, args.val_fraction)
    return pairs.subset(train_idx), pairs.subset(val_idx)


def _report(name: str, images, psnr: torch.Tensor) -> str:
    worst = int(psnr.argmin())
    return (f"{name} PSNR: mean {psnr.mean():.2f} dB, worst {psnr[worst]:.2f} dB ({images.names[worst]}) "
            f"over {len(images)} pairs")


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _run, errors=(ValueError, TypeError, OSError))


def _run(args: argparse.Namespace) -> int:
    out = console()
    device = check_device(args.device, args.backend)
    torch.set_num_threads(args.threads)
    names = ("lut_size", "interpolation", "smooth_weight", "tv_weight", "mono_weight", "steps", "lr",
             "batch_pixels")
    settings = {name: getattr(args, name) for name in names}
    check_fit_settings(**settings)  # before any image is decoded
    _check_outputs(args)
    t0 = time.perf_counter()
    train, val = _load(args)
    out.print(f"{len(train)} training / {len(val) if val is not None else 0} validation pairs at "
              f"{args.image_size}x{args.image_size}, loaded in {time.perf_counter() - t0:.1f} s")
    result = fit_lut(train.inputs, train.targets, **settings, seed=args.seed, backend=args.backend,
                     progress=out.is_terminal, device=device)
    out.print(f"fitted a {args.lut_size}^3 LUT in {result.seconds:.1f} s ({args.steps} steps); "
              + result.coverage_summary())
    for name, images in (("train", train), ("validation", val)):
        if images is not None:
            print(_report(name, images, image_psnr(images.inputs, images.targets, result.lut,
                                                   args.interpolation, args.backend)))
    title = args.title or Path(args.out).stem
    lutkern.write_lut(args.out, result.lut, title=title)
    picture = lut_picture(result.lut, result.coverage >= COVERED_WEIGHT, title=title)
    save_picture(picture_path(args.out), picture)
    out.print(f"wrote {args.out} and its picture {picture_path(args.out)}")
    if args.preview:
        shown = val if val is not None else train
        rows = [(x, y, lutkern.apply_lut(x, result.lut, interpolation=args.interpolation))
                for x, y in zip(shown.inputs[:PREVIEW_ROWS], shown.targets[:PREVIEW_ROWS], strict=True)]
        preview_grid(args.preview, rows, titles=("input", "target", "fitted LUT"))
        out.print(f"wrote {args.preview}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
