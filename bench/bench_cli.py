"""Start-up and whole commands: ``import lutkern`` and ``python -m lutkern.apply`` beside what a user would
otherwise run (``import torch``, ``ffmpeg -vf lut3d``), and the fresh-output ``apply_lut`` beside
OpenColorIO.

    python bench/bench_cli.py                   # every row, best of 5
    python bench/bench_cli.py --repeats 3 --rows import photo

Every row runs fresh processes (a command's time includes its interpreter's start-up and imports), best
wall time of ``--repeats``, the rows of a table taking turns each round so that a slow spell of a shared
machine hits them alike. Printed as Markdown tables, each row with its ratio to the baseline of its
table (> 1: lutkern takes longer). Inputs are made here: a 4 MP JPEG (2304x1728, a gradient with noise),
20 copies of it, a 20 s 1280x720 30 fps H.264 clip (``ffmpeg -f lavfi testsrc2``), and the
``teal_orange`` look written as a 33^3 ``.cube`` that both sides read. The commands, as a user types them:

  one photo   python -m lutkern.apply --lut X.cube photo.jpg --out D
              ffmpeg -i photo.jpg -vf lut3d=X.cube out.jpg
  20 photos   one lutkern command for all; one ffmpeg process per photo
  clip        libx264 CRF 18 preset medium on both sides

``torch path`` rows run the same command with ``LUTKERN_TORCH_FREE=0`` (it imports torch). The package's
bytecode is compiled first (as an installed package has it), whatever ``PYTHONDONTWRITEBYTECODE`` says.
The last table is ``bench/bench_vs_ocio.py --no-backward`` run as it is (fresh output and ``out=``).
Rows that need the ``ffmpeg`` binary or OpenColorIO are skipped without them.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROWS = ("import", "photo", "photos", "clip", "ocio")
FFMPEG = shutil.which("ffmpeg")


def run(cmd: list[str], env: dict | None = None) -> float:
    """Wall time of ``cmd`` (which must succeed)."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return wall


def best_of(rows: dict[str, object], repeats: int) -> dict[str, float]:
    """Best time of each row over ``repeats`` rounds, rows taking turns; a row is a command (list) or a
    callable returning a time."""
    best = dict.fromkeys(rows, float("inf"))
    for _ in range(repeats):
        for name, row in rows.items():
            best[name] = min(best[name], row() if callable(row) else run(row))
    return best


def table(title: str, best: dict[str, float], base: str, unit: str = "s") -> None:
    print(f"\n{title}\n\n| | {unit} | vs {base} |\n|---|---:|---:|")
    for name, t in best.items():
        print(f"| {name} | {t:.3f} | {t / best[base]:.2f}x |")


def make_inputs(folder: Path) -> dict[str, Path]:
    from PIL import Image

    import lutkern

    rng = np.random.default_rng(0)
    h, w = 1728, 2304
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x / w * 255, y / h * 255, (x + y) % 256], axis=-1) + rng.integers(-20, 20, (h, w, 3))
    photo = folder / "photo.jpg"
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(photo, quality=92)
    photos = folder / "photos"
    photos.mkdir()
    for i in range(20):
        shutil.copy(photo, photos / f"p{i:02d}.jpg")
    cube = folder / "look.cube"
    lutkern.write_cube(cube, lutkern.looks["teal_orange"](33), precision=9)
    inputs = {"photo": photo, "photos": photos, "cube": cube}
    if FFMPEG:
        clip = folder / "clip.mp4"
        subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=size=1280x720:rate=30:duration=20", "-c:v", "libx264", "-crf", "18",
                        "-pix_fmt", "yuv420p", str(clip)], check=True)
        inputs["clip"] = clip
    return inputs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    args = p.parse_args()
    compileall.compile_dir(ROOT / "lutkern", quiet=1)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "LUTKERN_TORCH_FREE")}
    env["PYTHONPATH"] = str(ROOT)
    torch_env = {**env, "LUTKERN_TORCH_FREE": "0"}
    py = sys.executable
    load = os.getloadavg()
    print(f"# {os.cpu_count()} CPUs, load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; best of "
          f"{args.repeats}; Python {sys.version.split()[0]}; ffmpeg {'found' if FFMPEG else 'absent'}")

    if "import" in args.rows:
        rows = {
            "import torch": [py, "-c", "import torch"],
            "import lutkern": [py, "-c", "import lutkern"],
            "from lutkern import apply_lut": [py, "-c", "from lutkern import apply_lut"],
            "import lutkern, apply_lut on 3x8x8": [py, "-c", "import torch, lutkern; lutkern.apply_lut("
                                                   "torch.rand(3, 8, 8), lutkern.identity_lut(5))"],
        }
        table("Import (fresh interpreters)", best_of({k: (lambda c=c: run(c, env)) for k, c in rows.items()},
                                                     args.repeats), "import torch")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if set(args.rows) & {"photo", "photos", "clip"}:
            inputs = make_inputs(folder)
        cube = str(inputs["cube"]) if set(args.rows) & {"photo", "photos", "clip"} else ""

        def ours(sources: list[Path], out: str, extra_env: dict) -> object:
            cmd = [py, "-m", "lutkern.apply", "--lut", cube, *map(str, sources), "--out", str(folder / out),
                   "--overwrite"]
            return lambda: run(cmd, extra_env)

        if "photo" in args.rows and FFMPEG:
            photo = inputs["photo"]
            rows = {
                "ffmpeg -vf lut3d": [FFMPEG, "-nostdin", "-v", "error", "-y", "-i", str(photo), "-vf",
                                     f"lut3d={cube}", str(folder / "ffmpeg.jpg")],
                "lutkern.apply": ours([photo], "o1", env),
                "lutkern.apply, torch path": ours([photo], "o2", torch_env),
            }
            table("One 4 MP JPEG (2304x1728), 33^3 .cube, trilinear", best_of(rows, args.repeats),
                  "ffmpeg -vf lut3d")

        if "photos" in args.rows and FFMPEG:
            photos = sorted(inputs["photos"].iterdir())
            per_photo = [[FFMPEG, "-nostdin", "-v", "error", "-y", "-i", str(src), "-vf", f"lut3d={cube}",
                          str(folder / f"ff-{src.name}")] for src in photos]
            rows = {
                "ffmpeg, one process per photo": lambda: sum(run(c) for c in per_photo),
                "lutkern.apply, one command": ours(photos, "o3", env),
                "lutkern.apply, torch path": ours(photos, "o4", torch_env),
                "lutkern.apply, one process per photo": lambda: sum(ours([s], "o5", env)() for s in photos),
            }
            table("20 such photos", best_of(rows, args.repeats), "ffmpeg, one process per photo")

        if "clip" in args.rows and FFMPEG:
            clip = inputs["clip"]
            rows = {
                "ffmpeg -vf lut3d, libx264": [FFMPEG, "-nostdin", "-v", "error", "-y", "-i", str(clip), "-vf",
                                              f"lut3d=file={cube}", "-c:v", "libx264", "-crf", "18",
                                              "-preset", "medium", "-pix_fmt", "yuv420p",
                                              str(folder / "ffmpeg.mp4")],
                "lutkern.apply": ours([clip], "o6", env),
            }
            table("A 20 s 1280x720 30 fps H.264 clip (600 frames), libx264 CRF 18 medium",
                  best_of(rows, args.repeats), "ffmpeg -vf lut3d, libx264")

    if "ocio" in args.rows:
        cmd = [py, str(ROOT / "bench" / "bench_vs_ocio.py"), "--no-backward", "--repeats", str(args.repeats)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        print("\napply_lut, fresh output and out=, beside OpenColorIO (bench/bench_vs_ocio.py)\n")
        print(done.stdout if done.returncode == 0 else f"skipped: {done.stderr.strip().splitlines()[-1]}")
    load = os.getloadavg()
    print(f"# load average after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
