"""Leave-photos-out: how the learned LUTs do on photographs that training never saw.

For each grade (the built-in looks ``bw`` and ``teal_orange``, the same on every photo, and the
``adaptive`` grade of :mod:`img2lut.adaptive_grade`, one LUT per photo), pairs are cut from the photos
that ship in the demo extra's wheels (as the demo data is: :func:`img2lut.demo.build_demo`). The crops
of ``--held-out`` photographs are set aside; everything is learned from the crops of the others. Rows:

- identity: no grade at all;
- direct fit: ``python -m img2lut.fit``'s LUT (:func:`img2lut.fit_lut`) fitted to the training pairs;
- CNN, one row per head: ``python -m img2lut.train`` with the default preset on the training pairs
  (its own validation split holds out whole training photos; the held-out photos stay unseen);
- true LUT(s): the grade itself, through the same 33^3 lattice (the ceiling).

Per row: PSNR on the held-out pairs, mean and worst image, and the time taken. A PNG per grade shows
the worst held-out image of every row (input | target | output). Results: docs/generalization.md.

    python bench/generalization.py --out runs/generalization            # all grades, all heads
    python bench/generalization.py --grades adaptive --heads curves --epochs 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

import lutkern
from img2lut import fit_lut, load
from img2lut import train as train_cmd
from img2lut.data import pair_files
from img2lut.demo import DEMO_SETS, PHOTOS, build_demo
from img2lut.fitting import image_psnr
from img2lut.model import HEADS
from img2lut.pair_loading import load_pairs
from img2lut.plots import preview_grid

GRADES = ("bw", "teal_orange", "adaptive")
HELD_OUT = ("coffee", "grace_hopper", "flower")


def _spec(grade: str, held_out: tuple[str, ...], crops: int, synthetic: int):
    base = DEMO_SETS["adaptive"] if grade == "adaptive" else replace(DEMO_SETS["bw"], look=grade)
    train_photos = tuple(p for p in PHOTOS if p not in held_out)
    return replace(base, train_photos=train_photos, val_photos=held_out, crops_per_photo=crops,
                   val_crops_per_photo=12, synthetic=0 if grade == "adaptive" else synthetic, val_synthetic=0)


def _row(name: str, psnr: torch.Tensor, seconds: float, outputs: torch.Tensor | None) -> dict:
    worst = int(psnr.argmin())
    return {"row": name, "mean": float(psnr.mean()), "worst": float(psnr[worst]), "worst_index": worst,
            "seconds": round(seconds, 1), "worst_output": None if outputs is None else outputs[worst]}


def _cnn(head: str, demo, work: Path, epochs: int | None, held) -> tuple[torch.Tensor, torch.Tensor, float]:
    args = ["--inputs", str(demo.inputs), "--targets", str(demo.targets), "--out", str(work),
            "--experiment", head, "--head", head, "--preview-every", "1000"]
    if epochs is not None:
        args += ["--epochs", str(epochs)]
    t0 = time.perf_counter()
    if train_cmd.main(args) != 0:
        raise SystemExit(f"training the {head} head failed")
    seconds = time.perf_counter() - t0
    model = load(work / "models" / head / "model.pt", device="cpu")
    with torch.no_grad():
        luts = model.predict_lut(held.inputs)
        outputs = lutkern.apply_lut(held.inputs, luts, interpolation=model.interpolation)
    mse = (outputs - held.targets).double().square().mean((1, 2, 3))
    return 10 * torch.log10(1 / mse).float(), outputs, seconds


def run_grade(grade: str, heads: list[str], args, work: Path) -> list[dict]:
    demo = build_demo(work / "pairs", _spec(grade, tuple(args.held_out), args.crops, args.synthetic))
    train = load_pairs(pair_files(demo.inputs, demo.targets), 256)
    held = load_pairs(pair_files(demo.val_inputs, demo.val_targets), 256)
    held.inputs, held.targets = held.inputs.tensor(), held.targets.tensor()  # a few dozen: whole tensors
    print(f"[{grade}] {len(train)} training pairs from {len(PHOTOS) - len(args.held_out)} photos, "
          f"{len(held)} held-out pairs from {', '.join(args.held_out)}", flush=True)
    identity = image_psnr(held.inputs, held.targets, lutkern.identity_lut(33))
    rows = [_row("identity", identity, 0.0, held.inputs)]
    t0 = time.perf_counter()
    fitted = fit_lut(train.inputs, train.targets)
    fit_out = lutkern.apply_lut(held.inputs, fitted.lut)
    rows.append(_row("direct fit", image_psnr(held.inputs, held.targets, fitted.lut),
                     time.perf_counter() - t0, fit_out))
    for head in heads:
        psnr, outputs, seconds = _cnn(head, demo, work / "runs", args.epochs, held)
        rows.append(_row(f"CNN, {head} head", psnr, seconds, outputs))
        last = rows[-1]
        print(f"[{grade}] {last['row']}: mean {last['mean']:.2f} dB, worst {last['worst']:.2f} dB, "
              f"{seconds:.0f} s", flush=True)
    truths = demo.true_luts(held.names, 33)
    if truths is None:
        truths = lutkern.looks[grade](33).expand(len(held), -1, -1, -1, -1)
    true_out = lutkern.apply_lut(held.inputs, truths)
    mse = (true_out - held.targets).double().square().mean((1, 2, 3))
    name = "true LUTs" if grade == "adaptive" else "true LUT"
    rows.append(_row(name, 10 * torch.log10(1 / mse).float(), 0.0, true_out))
    cells = [(held.inputs[r["worst_index"]], held.targets[r["worst_index"]], r["worst_output"]) for r in rows]
    labels = [f"{r['row']}: worst {held.names[r['worst_index']]}, {r['worst']:.1f} dB" for r in rows]
    preview_grid(args.out / f"worst-{grade}.png", cells, titles=("input", "target", "output"), labels=labels)
    for r in rows:
        r["worst_image"] = held.names[r.pop("worst_index")]
        r.pop("worst_output")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grades", nargs="+", choices=GRADES, default=list(GRADES))
    p.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS))
    p.add_argument("--held-out", nargs="+", choices=sorted(PHOTOS), default=list(HELD_OUT))
    p.add_argument("--crops", type=int, default=34, help="crops per training photo (6 photos: ~200 pairs)")
    p.add_argument("--synthetic", type=int, default=16, help="cube-covering synthetic pairs (global looks)")
    p.add_argument("--epochs", type=int, help="override the default preset's epochs")
    p.add_argument("--out", type=Path, default=Path("runs/generalization"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for grade in args.grades:
        with tempfile.TemporaryDirectory(prefix=f"generalization-{grade}-") as tmp:
            results[grade] = run_grade(grade, args.heads, args, Path(tmp))
        print(f"\n{grade}: PSNR on held-out photos (dB)")
        for r in results[grade]:
            print(f"  {r['row']:<22} mean {r['mean']:6.2f}  worst {r['worst']:6.2f} ({r['worst_image']})  "
                  f"{r['seconds']:.0f} s")
    (args.out / "generalization.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}/generalization.json and worst-*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
