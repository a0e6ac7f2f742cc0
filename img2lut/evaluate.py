"""Measure a trained model on (original, graded) pairs: ``python -m img2lut.evaluate MODEL --inputs DIR
--targets DIR``.

Pairs are matched by file name (as in training) and go through the model as in training's validation:
both images resized to the checkpoint's ``image_size`` (or ``--image-size``), the CNN sees the
``cnn_size`` thumbnail, the predicted LUT is applied to the resized input. Per image and on average:
PSNR (dB, images in [0,1]), SSIM (pytorch-msssim, ``data_range=1``) and the mean CIEDE2000 colour
difference (sRGB -> CIELAB D65, :mod:`img2lut.color`). ``mean.psnr_of_mean_mse`` is the PSNR of the MSE
over all pixels, which is what training reports as ``val_psnr``.

With ``--true-lut FILE.cube`` (or a ``truth.cube`` in the folder holding ``--inputs``), also the LUT error
as in training: the RMS difference between the mean predicted LUT and the true one, over all lattice
points and over those the evaluated inputs cover (:func:`img2lut.metrics.lattice_coverage`).

Outputs: a table on stdout, ``--json FILE`` (non-finite numbers, e.g. the PSNR of a perfect match, are
written as null), ``--grid FILE.png``: the best and worst images by PSNR, one row each, columns input |
target | output | error map (CIEDE2000 per pixel, black 0 -> red -> yellow -> white at ``ERROR_MAP_MAX``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lutkern.cli import CommandParser, add_device_flags, check_device, console, int_in, run_command
from lutkern.files import atomic_open, check_output

from . import pair_cache
from .data import check_pair_folders, default_true_lut, pair_files
from .evaluation import evaluate_pairs
from .pair_loading import decode_progress
from .plots import ERROR_MAP_MAX, error_map, preview_grid
from .prediction import load

PROG = "python -m img2lut.evaluate"
GRID_ROWS = 3  # best and worst images each in the grid


def grid_names(rows: list[dict], per_end: int = GRID_ROWS) -> list[str]:
    """Names for the grid: the ``per_end`` best then the ``per_end`` worst by PSNR (all when few)."""
    ranked = [r["name"] for r in sorted(rows, key=lambda r: (-r["psnr"], r["name"]))]
    return ranked if len(ranked) <= 2 * per_end else ranked[:per_end] + ranked[-per_end:]


def _table(report: dict) -> Table:
    table = Table(title=f"{report['pairs']} pairs at {report['image_size']}x{report['image_size']}")
    for column in ("image", "PSNR dB", "SSIM", "ΔE00"):
        table.add_column(column, justify="left" if column == "image" else "right")
    for r in report["images"]:
        table.add_row(r["name"], f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['delta_e00']:.3f}")
    m = report["mean"]
    table.add_section()
    table.add_row("mean", f"{m['psnr']:.2f}", f"{m['ssim']:.4f}", f"{m['delta_e00']:.3f}", style="bold")
    return table


def _json_safe(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description="Measure a trained model on (original, graded) "
                                "pairs: PSNR, SSIM, CIEDE2000 per image and on average, and the LUT error.")
    p.add_argument("checkpoint", type=Path, metavar="MODEL",
                   help="model.pt (or checkpoint.pt) written by python -m img2lut.train")
    p.add_argument("--inputs", required=True, metavar="DIR", help="folder of original images")
    p.add_argument("--targets", required=True, metavar="DIR", help="folder of graded images, paired by name")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the per-image and mean results here")
    p.add_argument("--grid", type=Path, metavar="FILE.png", help="write a PNG of the best and worst images")
    p.add_argument("--true-lut", type=Path, metavar="FILE",
                   help="the true LUT, any LUT file (.cube, .3dl, .spi3d, .csp, .clf, ...) (default: "
                   "truth.cube in the folder holding --inputs)")
    p.add_argument("--image-size", type=int_in(16, 8192), metavar="N",
                   help="resize pairs to N x N (default: the checkpoint's image_size, as in training)")
    p.add_argument("--batch-size", type=int_in(1, 4096), default=16)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json/--grid file")
    pair_cache.add_flags(p)
    add_device_flags(p)
    return p


def check_outputs(args: argparse.Namespace, pairs) -> None:
    """ValueError unless --json and --grid are two files that may be written (lutkern.files)."""
    inputs = [args.checkpoint, args.true_lut, default_true_lut(args.inputs),
              *(p.input for p in pairs), *(p.target for p in pairs)]
    if args.json is not None and args.grid is not None and args.json.resolve() == args.grid.resolve():
        raise ValueError(f"--json and --grid name the same file: {args.json}")
    for path in (args.json, args.grid):
        if path is not None:
            check_output(path, inputs, overwrite=args.overwrite)


def main(argv: list[str] | None = None) -> int:
    return run_command(_parser(), argv, _run, errors=(ValueError, OSError, RuntimeError))


def _run(args: argparse.Namespace) -> int:
    device = check_device(args.device, args.backend)
    check_pair_folders(args.inputs, args.targets)
    pairs = pair_files(args.inputs, args.targets)
    check_outputs(args, pairs)
    predictor = load(args.checkpoint, device)
    predictor.model.backend = args.backend
    with decode_progress(console()) as progress:
        task = progress.add_task("", total=len(pairs))
        report, images_of = evaluate_pairs(
            predictor, args.inputs, args.targets, image_size=args.image_size, batch_size=args.batch_size,
            true_lut=args.true_lut, progress=lambda i: progress.update(task, completed=i + 1),
            cache=pair_cache.resolve(args.cache_dir, not args.no_cache))
    report = {"checkpoint": str(args.checkpoint), **report}
    if args.grid is not None:
        names = grid_names(report["images"])
        images = images_of(names)
        preview_grid(args.grid, [(*images[k][:3], error_map(images[k][3])) for k in names],
                     titles=("input", "target", "output", f"dE00 0-{ERROR_MAP_MAX:g}"))
        report["grid"] = {"path": str(args.grid), "rows": names}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(args.json, "w") as f:
            f.write(json.dumps(_json_safe(report), indent=2) + "\n")
    _print_report(report, args.grid)
    return 0


def _print_report(report: dict, grid: Path | None) -> None:
    """The results on stdout: the table, the means, the LUT error and the grid's rows."""
    out = Console(soft_wrap=True, highlight=False)
    out.print(_table(report))
    m = report["mean"]
    worst = min(report["images"], key=lambda r: r["psnr"])
    out.print(f"mean: PSNR {m['psnr']:.2f} dB (of the mean MSE: {m['psnr_of_mean_mse']:.2f} dB; worst "
              f"image {worst['psnr']:.2f} dB, {worst['name']}), SSIM {m['ssim']:.4f}, "
              f"CIEDE2000 {m['delta_e00']:.3f}")
    if report["lut"] is not None:
        lut = report["lut"]
        out.print(f"LUT RMSE vs {lut['truth']}: {lut['rmse_all']:.4f} (all) / {lut['rmse_covered']:.4f} "
                  f"(covered, {100 * lut['covered_fraction']:.0f}% of the lattice)")
    if "grid" in report:
        out.print(f"grid rows, best to worst PSNR: {', '.join(report['grid']['rows'])} -> {grid}")


if __name__ == "__main__":
    sys.exit(main())
