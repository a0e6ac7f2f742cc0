"""Leave-photos-out: how ``python -m img2lut.train`` does on photographs and grade rules it never saw.

For each grade (the built-in looks ``bw`` and ``teal_orange``, the same on every photo, and every family
of :mod:`img2lut.grades`, one LUT per photo, each read off another statistic of the input), pairs are
cut from the photos that ship in the demo extra's wheels (as the demo data is:
:func:`img2lut.demo.build_demo`). The crops of ``--held-out`` photographs are set aside; everything is
learned from the crops of the others. Rows:

- identity: no grade at all;
- direct fit: ``python -m img2lut.fit``'s LUT (:func:`img2lut.fit_lut`) fitted to all training pairs;
- CNN, default command: ``python -m img2lut.train --inputs --targets`` with no recipe flag (it diagnoses
  the pairs and picks the recipe; its own validation split holds out whole training photos; the
  held-out photos stay unseen);
- true LUT(s): the grade itself, through the same 33^3 lattice (the ceiling).

Per row: PSNR on the held-out pairs, mean and worst image, and the time taken; for the CNN also the
diagnosis and the epoch kept. A PNG per grade shows the worst held-out image of every row
(input | target | output). Results: docs/generalization.md (``--markdown`` prints its table).

    python bench/generalization.py --out runs/generalization               # every grade
    python bench/generalization.py --grades levels auto_tone -- --photometric 0.5
    python bench/generalization.py --markdown runs/generalization/*.json   # the table of earlier runs
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
from img2lut.grades import FAMILIES
from img2lut.pair_loading import load_pairs
from img2lut.plots import preview_grid

GLOBAL_LOOKS = ("bw", "teal_orange")
GRADES = (*GLOBAL_LOOKS, *FAMILIES)
HELD_OUT = ("coffee", "grace_hopper", "flower")
MAX_PSNR = 60.0


def _spec(grade: str, held_out: tuple[str, ...], crops: int, synthetic: int):
    base = DEMO_SETS["bw"] if grade in GLOBAL_LOOKS else DEMO_SETS["adaptive"]
    look = {"look": grade} if grade in GLOBAL_LOOKS else {"grade": grade}
    train_photos = tuple(p for p in PHOTOS if p not in held_out)
    return replace(base, train_photos=train_photos, val_photos=held_out, crops_per_photo=crops,
                   val_crops_per_photo=12, synthetic=synthetic if grade in GLOBAL_LOOKS else 0,
                   val_synthetic=0, **look)


def _row(name: str, psnr: torch.Tensor, seconds: float, outputs: torch.Tensor | None) -> dict:
    worst = int(psnr.argmin())
    return {"row": name, "mean": float(psnr.mean()), "worst": float(psnr[worst]), "worst_index": worst,
            "seconds": round(seconds, 1), "worst_output": None if outputs is None else outputs[worst]}


def _psnr(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB), capped at MAX_PSNR: an output equal to its 8-bit target is that good, not
    infinitely good (a grade of strength 0 leaves some inputs as they are)."""
    mse = (outputs - targets).double().square().mean((1, 2, 3))
    return (10 * torch.log10(1 / mse)).clamp(max=MAX_PSNR).float()


def _cnn(demo, work: Path, extra: list[str], held) -> tuple[dict, torch.Tensor]:
    args = ["--inputs", str(demo.inputs), "--targets", str(demo.targets), "--out", str(work),
            "--experiment", "cnn", "--preview-every", "1000", *extra]
    t0 = time.perf_counter()
    if train_cmd.main(args) != 0:
        raise SystemExit("training failed")
    seconds = time.perf_counter() - t0
    run = work / "models" / "cnn"
    model = load(run / "model.pt", device="cpu")
    outputs = torch.stack([model.apply(x) for x in held.inputs])
    summary = json.loads((run / "summary.json").read_text())
    row = _row("CNN, default command", _psnr(outputs, held.targets), seconds, outputs)
    diagnosis = summary.get("diagnosis") or {}
    row.update(recipe=summary["recipe"], normalise=summary["normalise"], kept_epoch=summary["kept_epoch"],
               diagnosis=diagnosis.get("text", ""))
    return row, outputs


def run_grade(grade: str, args, work: Path) -> list[dict]:
    demo = build_demo(work / "pairs", _spec(grade, tuple(args.held_out), args.crops, args.synthetic))
    train = load_pairs(pair_files(demo.inputs, demo.targets), 256)
    held = load_pairs(pair_files(demo.val_inputs, demo.val_targets), 256)
    held.inputs, held.targets = held.inputs.tensor(), held.targets.tensor()  # a few dozen: whole tensors
    print(f"[{grade}] {len(train)} training pairs from {len(PHOTOS) - len(args.held_out)} photos, "
          f"{len(held)} held-out pairs from {', '.join(args.held_out)}", flush=True)
    rows = [_row("identity", _psnr(held.inputs, held.targets), 0.0, held.inputs)]
    t0 = time.perf_counter()
    fitted = fit_lut(train.inputs, train.targets)
    fit_out = lutkern.apply_lut(held.inputs, fitted.lut)
    rows.append(_row("direct fit", _psnr(fit_out, held.targets), time.perf_counter() - t0, fit_out))
    row, _ = _cnn(demo, work / "runs", args.train_args, held)
    rows.append(row)
    print(f"[{grade}] CNN: mean {row['mean']:.2f} dB, worst {row['worst']:.2f} dB, {row['seconds']:.0f} s; "
          f"{row['diagnosis']}", flush=True)
    truths = demo.true_luts(held.names, 33)
    if truths is None:
        truths = lutkern.looks[grade](33).expand(len(held), -1, -1, -1, -1)
    true_out = lutkern.apply_lut(held.inputs, truths)
    rows.append(_row("true LUT" if grade in GLOBAL_LOOKS else "true LUTs", _psnr(true_out, held.targets),
                     0.0, true_out))
    cells = [(held.inputs[r["worst_index"]], held.targets[r["worst_index"]], r["worst_output"]) for r in rows]
    labels = [f"{r['row']}: worst {held.names[r['worst_index']]}, {r['worst']:.1f} dB" for r in rows]
    preview_grid(args.out / f"worst-{grade}.png", cells, titles=("input", "target", "output"), labels=labels)
    for r in rows:
        r["worst_image"] = held.names[r.pop("worst_index")]
        r.pop("worst_output")
    return rows


def markdown(results: dict) -> str:
    """The table of docs/generalization.md, and the adaptive families' mean and worst gain and gap."""
    lines = ["| grade | identity | direct fit | CNN, default command | true LUT(s) | CNN - fit | diagnosis "
             "(recipe, correction, kept epoch) | CNN seconds |", "|---|---|---|---|---|---|---|---|"]
    gains, gaps = {}, {}
    for grade, rows in results.items():
        by = {r["row"].split(",")[0]: r for r in rows}
        cnn, fit = by["CNN"], by["direct fit"]
        truth = by.get("true LUTs") or by["true LUT"]
        cell = lambda r: f"{r['mean']:.2f} / {r['worst']:.2f}"  # noqa: E731
        gain = cnn["mean"] - fit["mean"]
        if grade in FAMILIES:
            gains[grade], gaps[grade] = gain, truth["mean"] - cnn["mean"]
        lines.append(f"| {grade} | {cell(by['identity'])} | {cell(fit)} | {cell(cnn)} | {cell(truth)} | "
                     f"{gain:+.2f} | {cnn['recipe']}, {cnn['normalise']}, {cnn['kept_epoch']} | "
                     f"{cnn['seconds']:.0f} |")
    if gains:
        lines.append("")
        lines.append(f"Adaptive families ({len(gains)}): gain of the CNN over the direct fit, mean "
                     f"{sum(gains.values()) / len(gains):+.2f} dB, worst {min(gains.values()):+.2f} dB "
                     f"({min(gains, key=gains.get)}); gap to the true per-image LUTs, mean "
                     f"{sum(gaps.values()) / len(gaps):.2f} dB, worst {max(gaps.values()):.2f} dB "
                     f"({max(gaps, key=gaps.get)}).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="arguments after -- go to python -m img2lut.train")
    p.add_argument("--grades", nargs="+", choices=GRADES, default=list(GRADES))
    p.add_argument("--held-out", nargs="+", choices=sorted(PHOTOS), default=list(HELD_OUT))
    p.add_argument("--crops", type=int, default=34, help="crops per training photo (6 photos: ~200 pairs)")
    p.add_argument("--synthetic", type=int, default=16, help="cube-covering synthetic pairs (global looks)")
    p.add_argument("--out", type=Path, default=Path("runs/generalization"))
    p.add_argument("--markdown", nargs="+", type=Path, metavar="JSON",
                   help="print the table of these results files and exit")
    args = p.parse_args(argv)
    if args.markdown:
        results = {}
        for path in args.markdown:
            results.update(json.loads(path.read_text()))
        print(markdown(results))
        return 0
    args.train_args = train_args
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for grade in args.grades:
        with tempfile.TemporaryDirectory(prefix=f"generalization-{grade}-") as tmp:
            results[grade] = run_grade(grade, args, Path(tmp))
        (args.out / "generalization.json").write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"wrote {args.out}/generalization.json and worst-*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
