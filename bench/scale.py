"""A photographer's catalogue: N full-resolution pairs through ``train``, ``fit`` and ``evaluate``, cold
(no pair cache) and warm (the cache of the run before).

    python bench/scale.py --work /tmp/scale --pairs 200 1000          # generate, then measure
    python bench/scale.py --work /tmp/scale --pairs 200 --quality     # + reduced vs full decoding

Pairs: the demo extra's photos (:data:`img2lut.demo.PHOTOS`), each pair with its own exposure and white
balance (the input) and a grade (``lutkern.looks["teal_orange"]`` then a contrast curve: the target),
both upscaled to --megapixels (bicubic) and saved as JPEG (quality 90, 4:2:0 as cameras write). The grade
is applied before the upscale, at the photo's own size (the upscale is linear, so the pair is still the
grade to within the interpolation's overshoot). --distinct pairs are made (encoding 12 MP JPEGs is the
slow part); pair k is a hard link to pair k mod --distinct: the pair cache keys each file by its path
(with size and mtime), so every link is a pair of its own, decoded and cached as N distinct pairs would
be, while the disk holds --distinct pairs. Sets of fewer pairs are the first of the largest (hard links).

Each command runs in a fresh process (``python -m img2lut.train --epochs 1 --recipe adaptive``: the
diagnosis still runs and picks the correction, but a CNN epoch is always trained; ``img2lut.fit --steps 100``,
``img2lut.evaluate`` of the model train wrote) with the cache in --work; cold removes the cache first.
Reported: wall seconds to have the pairs (decoded or read from the cache), to the first training step
(train: the first optimizer step, after the recipe's first stage, a fit of one LUT, and its validation;
warm, the statistics, thumbnails, diagnosis and fitted LUT are read back from the cache;
fit: the start of the fit; evaluate: the first batch through the model), the epoch (train: the steps of
one epoch; fit: its steps; evaluate: all batches), the whole command, and the peak RSS of the command's
process (the decoding workers, forks of one server, are not counted: about 200 MB each), with its peak
of anonymous memory (sampled every 20 ms): the rest is pages of the pair cache's memory maps, which the
OS can drop.

--quality: held-out PSNR of the default recipe (``python -m img2lut.train`` defaults, --epochs as given)
on the smallest set with reduced decoding against full decoding (the reduction turned off).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

LOOK = "teal_orange"
COMMANDS = ("train", "fit", "evaluate")
ASPECT = (4, 3)


def _size(megapixels: float) -> tuple[int, int]:
    """(width, height) of about ``megapixels`` at 4:3, both multiples of 16 (as camera sizes are)."""
    unit = (megapixels * 1e6 / (ASPECT[0] * ASPECT[1])) ** 0.5
    return int(unit * ASPECT[0]) // 16 * 16, int(unit * ASPECT[1]) // 16 * 16


def _make_pair(k: int, folder: Path, size: tuple[int, int]) -> None:
    import lutkern
    from img2lut.demo import PHOTOS, load_photo

    names = sorted(PHOTOS)
    gen = torch.Generator().manual_seed(k)
    photo = load_photo(names[k % len(names)])
    gains = torch.exp(torch.randn(3, generator=gen) * 0.08) * 2 ** (torch.randn(1, generator=gen) * 0.4)
    original = (photo * gains.view(3, 1, 1)).clamp(0, 1)  # exposure and white balance of this pair
    graded = lutkern.apply_lut(original, lutkern.looks[LOOK](33))
    graded = 0.5 + (graded - 0.5) * 1.15  # and a contrast curve
    for sub, pixels in (("inputs", original), ("targets", graded)):
        codes = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(codes).resize(size, Image.BICUBIC).save(folder / sub / f"pair{k:05d}.jpg",
                                                                 quality=90)


def generate(work: Path, n: int, megapixels: float, distinct: int) -> Path:
    """``work/pairs-Mmp-N`` with ``inputs/`` and ``targets/`` of ``n`` pairs (made once; resumed if cut)."""
    folder = work / f"pairs-{megapixels:g}mp-{n}"
    done = folder / "complete"
    if done.exists():
        return folder
    for sub in ("inputs", "targets"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    size = _size(megapixels)
    todo = [k for k in range(min(n, distinct)) if not (folder / "targets" / f"pair{k:05d}.jpg").exists()]
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_make_pair, todo, [folder] * len(todo), [size] * len(todo)))
    for k in range(distinct, n):
        for sub in ("inputs", "targets"):
            target = folder / sub / f"pair{k:05d}.jpg"
            if not target.exists():
                os.link(folder / sub / f"pair{k % distinct:05d}.jpg", target)
    print(f"generated {n} pairs ({len(todo)} made) at {size[0]}x{size[1]} in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    done.write_text("")
    return folder


def subset(big: Path, n: int, work: Path, megapixels: float) -> Path:
    """``n`` pairs of ``big`` as hard links in a folder of their own (its own pack in the cache)."""
    folder = work / f"pairs-{megapixels:g}mp-{n}"
    if (folder / "complete").exists():
        return folder
    for sub in ("inputs", "targets"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            target = folder / sub / f"pair{k:05d}.jpg"
            if not target.exists():
                os.link(big / sub / f"pair{k:05d}.jpg", target)
    (folder / "complete").write_text("")
    return folder


# Runs in the command's process: times the first step and the epoch, reports peak RSS, then exits.
_PROBE = textwrap.dedent("""
    import json, resource, sys, threading, time
    t0 = time.perf_counter()
    marks = {}
    anon = [0]
    def sample():
        while True:
            with open("/proc/self/status") as f:
                kb = [int(line.split()[1]) for line in f if line.startswith("RssAnon:")]
            anon[0] = max(anon[0], kb[0] if kb else 0)
            time.sleep(0.02)
    threading.Thread(target=sample, daemon=True).start()
    def mark(name):
        marks.setdefault(name, time.perf_counter() - t0)
    def wrap(owner, attr, first, last=None):
        real = getattr(owner, attr)
        def wrapped(*a, **k):
            mark(first)
            out = real(*a, **k)
            if last:
                marks[last] = time.perf_counter() - t0
            return out
        setattr(owner, attr, wrapped)
    command, quality, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    if quality == "full":  # no reduction: every image decoded whole, then resized, in this process (a
        import img2lut.decoding, img2lut.pair_loading  # worker would import the setting afresh)
        img2lut.decoding.OVERSAMPLE = img2lut.pair_loading.OVERSAMPLE = 1 << 20  # the cache key's too
        img2lut.pair_loading.MIN_POOL_PAIRS = 1 << 30
    if command == "train":
        from img2lut import trainer
        import img2lut.train as cli
        wrap(trainer.Trainer, "_step", "first_step", "last_step")
        wrap(cli, "load_training_data", "load_start", "loaded")
    elif command == "fit":
        import img2lut.fit as cli
        wrap(cli, "fit_lut", "first_step", "last_step")
        wrap(cli, "_load", "load_start", "loaded")
    else:
        import img2lut.evaluation as mod
        import img2lut.evaluate as cli
        wrap(mod, "evaluate_model", "first_step", "last_step")
        wrap(mod, "load_pairs", "load_start", "loaded")
    main = cli.main
    status = main(argv)
    marks["total"] = time.perf_counter() - t0
    marks["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    marks["anon_mb"] = anon[0] / 1024
    print("PROBE " + json.dumps(marks))
    sys.exit(status)
""")


def run(command: str, argv: list[str], quality: str = "reduced") -> dict:
    proc = subprocess.run([sys.executable, "-c", _PROBE, command, quality, *argv], capture_output=True,
                          text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    probe = [line for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    if proc.returncode != 0 or not probe:
        raise SystemExit(f"{command} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-2000:]}")
    marks = json.loads(probe[-1][6:])
    marks["epoch"] = marks.get("last_step", 0) - marks.get("first_step", 0)
    marks["output"] = proc.stdout
    return marks


def measure(folder: Path, work: Path, n: int, which: list[str]) -> list[dict]:
    cache = work / "cache"
    runs = work / "runs"
    common = ["--inputs", str(folder / "inputs"), "--targets", str(folder / "targets"), "--cache-dir",
              str(cache)]
    model = runs / "models" / f"scale{n}" / "model.pt"
    commands = {
        "train": ["--epochs", "1", "--recipe", "adaptive", "--out", str(runs), "--experiment", f"scale{n}",
                  "--preview-every", "100", *common],
        "fit": ["--steps", "100", "--out", str(work / f"fit{n}.cube"), "--overwrite", *common],
        "evaluate": [str(model), *common],
    }
    rows = []
    for command in which:
        argv = commands[command]
        for state in ("cold", "warm"):
            if state == "cold":
                shutil.rmtree(cache, ignore_errors=True)
            if command == "train":
                shutil.rmtree(runs / "models" / f"scale{n}", ignore_errors=True)
            m = run(command, argv)
            row = {"pairs": n, "command": command, "state": state, "load_s": m["loaded"] - m["load_start"],
                   "first_step_s": m.get("first_step"), "epoch_s": m["epoch"], "total_s": m["total"],
                   "rss_mb": m["rss_mb"], "anon_mb": m["anon_mb"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def quality(folder: Path, work: Path, epochs: int) -> dict:
    """Held-out PSNR of the default recipe, reduced vs full decoding (each with its own cache)."""
    out = {}
    for mode in ("reduced", "full"):
        runs = work / f"quality-{mode}"
        shutil.rmtree(runs, ignore_errors=True)
        argv = ["--inputs", str(folder / "inputs"), "--targets", str(folder / "targets"), "--epochs",
                str(epochs), "--out", str(runs), "--experiment", "q", "--cache-dir",
                str(work / f"cache-{mode}")]
        m = run("train", argv, mode)
        summary = json.loads((runs / "models" / "q" / "summary.json").read_text())
        out[mode] = {"val_psnr": summary["val_psnr"], "val_psnr_mean_image": summary["val_psnr_mean_image"],
                     "total_s": m["total"]}
        print(json.dumps({mode: out[mode]}), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True, help="where the pairs, the cache and the runs go")
    p.add_argument("--pairs", type=int, nargs="+", default=[200, 1000])
    p.add_argument("--megapixels", type=float, default=12.0)
    p.add_argument("--distinct", type=int, default=40, help="pairs made; the others are copies of them")
    p.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS),
                   help="which commands to measure (evaluate needs train's model)")
    p.add_argument("--quality", action="store_true", help="also reduced vs full decoding (smallest set)")
    p.add_argument("--quality-epochs", type=int, default=100)
    p.add_argument("--skip-measure", action="store_true")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sizes = sorted(args.pairs)
    big = generate(args.work, sizes[-1], args.megapixels, args.distinct)
    folders = {n: subset(big, n, args.work, args.megapixels) if n != sizes[-1] else big for n in sizes}
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; torch {torch.__version__}; "
          f"numpy {np.__version__}", flush=True)
    results = {"rows": []}
    if not args.skip_measure:
        for n in sizes:
            results["rows"] += measure(folders[n], args.work, n, args.commands)
    if args.quality:
        results["quality"] = quality(folders[sizes[0]], args.work, args.quality_epochs)
    (args.work / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
