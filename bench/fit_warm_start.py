"""Validation PSNR against training time of the CNN, started cold (identity LUT) or warm (at a LUT fitted
directly by ``python -m img2lut.fit``), on the built-in demo data (the measurement in docs/fit.md).

Runs ``img2lut.fit`` on the demo's training pairs, then ``img2lut.train`` with the same settings,
without and with ``--init-from`` (or the ``--run`` variants given); prints validation PSNR and seconds
per epoch and draws docs/images/fit_warm_start.png.

    python bench/fit_warm_start.py [--epochs 4] [--run "NAME=TRAIN ARGS" ...] [--out runs/warm-start]
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import time
from pathlib import Path

import torch

import lutkern
from img2lut import fit, train
from img2lut.data import pair_files
from img2lut.demo import ensure_demo
from img2lut.metrics import psnr_from_mse
from img2lut.pair_loading import load_pairs
from img2lut.plots import loss_plot

DEFAULT_RUNS = ("CNN from identity=", "CNN from fit=--init-from {cube}")


def _metrics(run: Path) -> list[dict]:
    with (run / "metrics.csv").open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", default="runs/warm-start")
    ap.add_argument("--png", default="docs/images/fit_warm_start.png")
    ap.add_argument("--run", action="append", metavar="NAME=TRAIN ARGS",
                    help="a training run to compare (repeatable; {cube} is the fitted LUT); default: "
                    + "; ".join(DEFAULT_RUNS))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is faster than 2 on a shared, busy 2-core machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demo = ensure_demo()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f} at start; "
          f"demo data {demo.root}")

    cube = out / "fit.cube"
    t0 = time.perf_counter()
    fit.main(["--inputs", str(demo.inputs), "--targets", str(demo.targets), "--val-inputs",
              str(demo.val_inputs), "--val-targets", str(demo.val_targets), "--out", str(cube)])
    fit_seconds = time.perf_counter() - t0
    # The fit's validation MSE, measured like train.py's (over all validation pixels).
    val = load_pairs(pair_files(demo.val_inputs, demo.val_targets), 256)
    lut = lutkern.read_cube(cube).lut3d.float()
    fit_mse = float((lutkern.apply_lut(val.inputs.tensor(), lut) - val.targets.tensor()).square().mean())

    runs = {}
    for spec in args.run or DEFAULT_RUNS:
        name, _, extra = spec.partition("=")
        experiment = "".join(ch if ch.isalnum() else "-" for ch in name)
        argv = ["--epochs", str(args.epochs), "--out", str(out), "--experiment", experiment,
                *shlex.split(extra.replace("{cube}", str(cube)))]
        print(f"\n## {name}: python -m img2lut.train {shlex.join(argv)}")
        if train.main(argv) != 0:
            raise SystemExit(f"train {name} failed")
        runs[name] = _metrics(out / "models" / experiment)

    print(f"\ndirect fit: validation PSNR {psnr_from_mse(fit_mse):.2f} dB, {fit_seconds:.0f} s in all "
          "(loading, fit, evaluation)")
    print("| epoch | " + " | ".join(f"{n}: s | {n}: val PSNR dB" for n in runs) + " |")
    print("|---|" + "---|---|" * len(runs))
    for rows in zip(*runs.values(), strict=True):
        cells = " | ".join(f"{r['seconds']:.0f} | {r['val_psnr']:.2f}" for r in rows)
        print(f"| {rows[0]['epoch']:.0f} | {cells} |")
    first = next(iter(runs.values()))
    epochs = [int(r["epoch"]) for r in first]
    per_epoch = first[-1]["seconds"] / len(epochs)
    # The direct fit first: a warm run that stays on its line is drawn over it.
    series = {f"direct fit ({fit_seconds:.0f} s)": [fit_mse] * len(epochs)}
    series.update({name: [r["val_mse"] for r in rows] for name, rows in runs.items()})
    loss_plot(args.png, epochs, series,
              title=f"demo validation MSE (log; PSNR = -10 log10 MSE), about {per_epoch:.0f} s per epoch")
    print(f"wrote {args.png}; load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
