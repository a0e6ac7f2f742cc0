"""Peak memory and time of ``python -m lutkern.apply`` on a large photo vs grading the whole image at once.

    python bench/bench_apply_memory.py [--megapixels 24] [--depth 8|16] [--format png|jpg|tif]

A synthetic photo (smooth gradients plus noise) of the requested size is written to a temporary folder,
then each row runs once in a fresh process and reports its peak RSS (``ru_maxrss``) and wall time:
  import only      ``import lutkern.apply`` (the interpreter, torch, Pillow, rich): the floor
  strips (CLI)     ``python -m lutkern.apply --lut bw`` : integer codes graded in place, strip by strip
  whole image      ``read_image`` -> ``apply_lut`` on the full float image -> ``write_image``
Printed as Markdown rows with the peak above the floor in MiB and as a multiple of the decoded integer
image (H*W*3 bytes at 8 bits, twice that at 16).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

_WHOLE = """
import sys, torch
from lutkern import apply_lut, looks
from lutkern.imageio import read_image, write_image
img = read_image(sys.argv[1])
out = apply_lut(img.pixels[None], looks["bw"](33), backend="torch")[0]
write_image(sys.argv[2], out, bit_depth=img.bit_depth, icc_profile=img.icc_profile)
"""
_PEAK = "import resource, sys; print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)"


def _peak_kib(cmd: list[str]) -> tuple[int, float]:
    """Run ``cmd`` in a fresh wrapper process; return (child's peak RSS in KiB, wall seconds)."""
    wrapper = f"import subprocess, sys; subprocess.run({cmd!r}, check=True, cwd={str(ROOT)!r}); {_PEAK}"
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, check=True)
    return int(run.stderr.strip().splitlines()[-1]), time.perf_counter() - t0


def _photo(path: Path, megapixels: float, depth: int) -> tuple[int, int]:
    from lutkern.imageio import write_codes

    w = int((megapixels * 1e6 * 1.5) ** 0.5)
    h = int(w / 1.5)
    top = 255 if depth == 8 else 65535
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    codes = np.empty((h, w, 3), dtype=np.uint8 if depth == 8 else np.uint16)
    for c, plane in enumerate((x + 0 * y, y + 0 * x, (x + y) / 2)):
        noise = rng.normal(0, 0.02, size=(h, w)).astype(np.float32)
        codes[..., c] = np.clip((plane + noise) * top, 0, top).round()
    write_codes(path, codes)
    return h, w


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--megapixels", type=float, default=24)
    p.add_argument("--depth", type=int, choices=(8, 16), default=8)
    p.add_argument("--format", choices=("png", "jpg", "tif"), default="png")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"photo.{args.format}"
        h, w = _photo(src, args.megapixels, args.depth)
        image_mib = h * w * 3 * (args.depth // 8) / 2**20
        rows = [
            ("import only", [sys.executable, "-c", "import lutkern.apply, rich.progress"]),
            (
                "strips (CLI)",
                [
                    sys.executable,
                    "-m",
                    "lutkern.apply",
                    "--lut",
                    "bw",
                    "--backend",
                    "torch",
                    str(src),
                    "--out",
                    str(Path(tmp) / "out"),
                ],
            ),
            (
                "whole image",
                [sys.executable, "-c", _WHOLE, str(src), str(Path(tmp) / f"whole.{args.format}")],
            ),
        ]
        print(
            f"{w}x{h} ({h * w / 1e6:.1f} MP) {args.depth}-bit {args.format}, "
            f"decoded codes {image_mib:.0f} MiB; CPU {platform.machine()}, torch backend"
        )
        print("| row | peak RSS MiB | above import MiB | x decoded image | wall s |")
        print("|---|---|---|---|---|")
        floor = None
        for name, cmd in rows:
            kib, secs = _peak_kib(cmd)
            mib = kib / 1024
            floor = mib if floor is None else floor
            print(
                f"| {name} | {mib:.0f} | {mib - floor:.0f} | {(mib - floor) / image_mib:.1f} | {secs:.1f} |"
            )


if __name__ == "__main__":
    main()
