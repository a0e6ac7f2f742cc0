"""Held-out PSNR of a directly fitted LUT against the regularizer weights (the measurement in docs/fit.md).

Data: the five distinct colour photos bundled with scikit-image (astronaut, chelsea, coffee, rocket,
motorcycle), downscaled 2x, graded by a built-in look. Leave one photo out: fit on four, measure the
PSNR of the fifth, for each of the five; report the mean and the worst held-out photo per setting, the
training PSNR and the fit time. Held-out photos have colours the training photos never show, so this
measures how well the regularizers fill the uncovered lattice cells.

    python bench/fit_regularizer_sweep.py [--look bw] [--steps 500] [--grid weights|params]
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import time

import numpy as np
import torch

import lutkern
from img2lut.fitting import fit_lut, image_psnr


def photos() -> dict[str, torch.Tensor]:
    """The bundled photos as ``(3,H,W)`` float32 in [0,1], downscaled 2x (area average)."""
    import skimage.data

    raw = {
        "astronaut": skimage.data.astronaut(),
        "chelsea": skimage.data.chelsea(),
        "coffee": skimage.data.coffee(),
        "rocket": skimage.data.rocket(),
        "motorcycle": skimage.data.stereo_motorcycle()[0],
    }
    out = {}
    for name, arr in raw.items():
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float().div(255)
        out[name] = torch.nn.functional.avg_pool2d(t.unsqueeze(0), 2).squeeze(0)
    return out


def held_out(inputs: dict, targets: dict, args, **fit_kwargs) -> tuple[list[float], list[float], float]:
    """Leave-one-photo-out: (held-out PSNR per photo, train PSNR per fold, mean fit seconds)."""
    held, train, secs = [], [], []
    names = list(inputs)
    for name in names:
        rest = [n for n in names if n != name]
        res = fit_lut([inputs[n] for n in rest], [targets[n] for n in rest], lut_size=args.lut_size,
                      steps=args.steps, **fit_kwargs)
        held.append(image_psnr([inputs[name]], [targets[name]], res.lut).item())
        train.append(image_psnr([inputs[n] for n in rest], [targets[n] for n in rest], res.lut).mean().item())
        secs.append(res.seconds)
    return held, train, sum(secs) / len(secs)


GRIDS = {
    # (parametrization, lr) at fixed regularizer weights: which optimisation fills the cube best.
    "params": [dict(parametrization=p, lr=lr, tv_weight=1e-2) for p, lr in
               [("values", 2e-3), ("values", 5e-3), ("values", 2e-2),
                ("logits", 2e-2), ("logits", 1e-1), ("logits", 3e-1),
                ("values", 5e-2), ("values", 1e-1)]],
    # One regularizer at a time, then the promising combinations.
    "weights": (
        [dict(tv_weight=w) for w in (0.0, 1e-3, 1e-2, 1e-1)]
        + [dict(tv_weight=0.0, smooth_weight=w) for w in (1e-3, 1e-2)]
        + [dict(tv_weight=1e-2, mono_weight=w) for w in (1e-2, 1e-1)]
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--look", default="bw")
    ap.add_argument("--lut-size", type=int, default=33)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is several times faster than 2 on a shared, busy 2-core machine)")
    ap.add_argument("--grid", choices=sorted(GRIDS), default="weights")
    ap.add_argument("--lr", type=float, default=None, help="override the learning rate of the weight grid")
    ap.add_argument("--rows", help="comma-separated indices of the grid rows to run (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    truth = lutkern.looks[args.look](args.lut_size)
    inputs = photos()
    targets = {n: lutkern.apply_lut(x, truth) for n, x in inputs.items()}
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.2f} at start; look {args.look!r}, D={args.lut_size}, {args.steps} steps, "
          f"leave-one-photo-out over {len(inputs)} photos ({', '.join(inputs)})")
    print(f"# unlisted: lr={inspect.signature(fit_lut).parameters['lr'].default:g}, "
          f"parametrization={inspect.signature(fit_lut).parameters['parametrization'].default}, weights 0")
    print("| setting | held-out mean dB | held-out worst dB (photo) | train mean dB | fit s |")
    print("|---|---|---|---|---|")
    # Unlisted weights are 0 (not fit_lut's defaults), so a row means the same when the defaults change.
    base = dict(smooth_weight=0.0, tv_weight=0.0, mono_weight=0.0)
    grid = GRIDS[args.grid]
    rows = [grid[int(i)] for i in args.rows.split(",")] if args.rows else grid
    for cfg in rows:
        if args.lr is not None and "lr" not in cfg:
            cfg = {**cfg, "lr": args.lr}
        held, train, secs = held_out(inputs, targets, args, **{**base, **cfg})
        worst = min(range(len(held)), key=held.__getitem__)
        label = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in cfg.items())
        print(f"| {label} | {np.mean(held):.2f} | {held[worst]:.2f} ({list(inputs)[worst]}) | "
              f"{np.mean(train):.2f} | {secs:.1f} |", flush=True)
    print(f"# load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
