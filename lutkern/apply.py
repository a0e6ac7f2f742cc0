"""Apply a LUT to photos: ``python -m lutkern.apply --lut FILE.cube|HALD.png|LOOK IMAGES... --out DIR``.

Each image is written to ``DIR`` under its own name, in its own format and bit depth (PNG 8/16-bit, JPEG,
TIFF 8/16-bit), upright (EXIF orientation applied, the tag reset), with its ICC profile and EXIF carried
over. The LUT is applied to the stored code values: no colour management, so the profile still describes
the output. Inputs are never overwritten, existing outputs only with ``--overwrite``. An unreadable file
gets a one-line error and the batch goes on; the exit status is 1 if any file failed, 2 for bad arguments.

Memory: an image is decoded once to uint8/uint16 codes, graded in horizontal strips of about
``--strip-pixels`` pixels (float32 input and output strips only), and each strip written back into the code
array in place, so the peak is about one integer image plus two float strips (plus Pillow's own buffer
while decoding and encoding).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import ImageCms
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ._cli import CommandParser, check_device, int_in, one_line, warnings_on_one_line
from ._outputs import check_output
from .builtin_looks import LOOKS
from .cube import CubeLUT, read_cube
from .hald import read_hald
from .imageio import (
    FORMATS,
    DecodedImage,
    codes_to_pixels,
    decode_image,
    output_format,
    to_integer_array,
    write_codes,
)
from .reference.apply import INTERPOLATIONS

PROG = "python -m lutkern.apply"
DEFAULT_STRIP_PIXELS = 1 << 20  # 1 Mpx: 12 MiB per float32 RGB strip (the torch path makes ~20 temporaries)


def load_lut(spec: str, size: int = 33) -> CubeLUT:
    """A ``.cube`` file, a Hald CLUT image (``.png``/``.tif``/``.tiff``) or the name of a built-in look."""
    path = Path(spec)
    if path.is_file():
        ext = path.suffix.lower()
        if ext == ".cube":
            return read_cube(path)
        if ext in (".png", ".tif", ".tiff"):
            return CubeLUT(read_hald(path), title=path.stem)
        raise ValueError(f"{spec}: unknown LUT file type {ext!r} (expected .cube, or a Hald CLUT .png/.tif)")
    if spec in LOOKS:
        return CubeLUT(LOOKS[spec](size), title=spec)
    if path.exists():
        raise ValueError(f"{spec}: not a regular file")
    raise ValueError(f"{spec}: no such file, and not a built-in look (looks: {', '.join(sorted(LOOKS))})")


def grade_codes(
    codes: np.ndarray,
    lut: CubeLUT,
    *,
    interpolation: str = "trilinear",
    device: str | torch.device = "cpu",
    backend: str | None = None,
    strip_pixels: int = DEFAULT_STRIP_PIXELS,
    on_strip=None,
) -> np.ndarray:
    """Grade ``codes`` ``(H,W,3)`` uint8/uint16 in place, strip by strip, and return it.

    Output codes are the LUT output clamped to [0, 1] and rounded to the nearest code.
    """
    depth = 8 if codes.dtype == np.uint8 else 16
    h, w, _ = codes.shape
    rows = max(1, strip_pixels // max(w, 1))
    for y in range(0, h, rows):
        x = codes_to_pixels(codes[y : y + rows], depth).to(device)
        out = lut.apply(x.unsqueeze(0), interpolation=interpolation, backend=backend)[0]
        codes[y : y + rows] = to_integer_array(out, depth)
        if on_strip is not None:
            on_strip(min(rows, h - y) / h)
    return codes


def _profile_name(icc: bytes) -> str:
    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() or "unnamed"
    except Exception:  # an unparsable profile is still carried over byte for byte
        return "unparsable"


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--lut", required=True, help="a .cube file, a Hald CLUT .png/.tif, or a look: " + ", ".join(LOOKS)
    )
    p.add_argument("--interpolation", default="trilinear", choices=INTERPOLATIONS)
    p.add_argument("--size", type=int, default=33, help="LUT size for a built-in look (default 33)")
    p.add_argument("--out", required=True, type=Path, help="output directory (created if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    p.add_argument("--quality", type=int_in(1, 100), default=95, help="JPEG quality, 1-100 (default 95)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backend", choices=("triton", "torch"), help="apply_lut backend (default: automatic)")
    p.add_argument("--strip-pixels", type=int, default=DEFAULT_STRIP_PIXELS, help=argparse.SUPPRESS)
    p.add_argument("images", nargs="+", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with warnings_on_one_line(PROG):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    err = Console(stderr=True, highlight=False, soft_wrap=True)  # soft wrap: one error, one line
    try:
        args.device = check_device(args.device, args.backend)
        lut = load_lut(args.lut, args.size)
        args.out.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as exc:  # CubeFormatError is a ValueError
        err.print(f"{PROG}: error: {one_line(exc)}", markup=False)
        return 2
    seen: dict[Path, Path] = {}
    failed = process_files(
        args.images, lambda src, on_strip: _grade_file(src, args, lut, seen, on_strip), err, label="grading"
    )
    ok = len(args.images) - failed
    err.print(f"{ok} graded into {args.out}, {failed} failed", markup=False)
    return 1 if failed else 0


def process_files(paths, process, console: Console, *, label: str, errors=(ValueError, OSError)) -> int:
    """Run ``process(path, on_strip)`` on each path under a progress bar, reporting errors per file.

    ``process`` returns a note for the console ('' for none) and may call ``on_strip(fraction)`` as it
    goes. An exception of ``errors`` is printed as one line naming the file once (:func:`one_line`: a
    file name cannot break the line) and the batch goes on. Returns the number of files that failed.
    """
    failed = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(label, total=len(paths))
        for src in paths:
            progress.update(task, description=f"{label} {src.name}")
            done_before = progress.tasks[task].completed
            try:
                note = process(src, lambda f: progress.advance(task, f))
                if note:
                    progress.console.print(one_line(f"{src}: {note}"), markup=False, highlight=False)
            except errors as exc:
                failed += 1
                text = str(exc) if str(src) in str(exc) else f"{src}: {exc}"
                progress.console.print(f"error: {one_line(text)}", markup=False, highlight=False)
            progress.update(task, completed=done_before + 1)
    return failed


def _grade_file(src: Path, args, lut: CubeLUT, seen: dict[Path, Path], on_strip) -> str:
    """Grade one file into ``args.out``; returns a note for the console (ICC profile, alpha) or ''."""
    dst = args.out / src.name
    if src.suffix.lower() not in FORMATS:
        raise ValueError(f"unsupported image type {src.suffix!r} (PNG, JPEG or TIFF)")
    if dst in seen:
        raise ValueError(f"same output name as {seen[dst]}: {dst} would be written twice")
    check_output(dst, [*args.images, args.lut], overwrite=args.overwrite)
    seen[dst] = src
    img = decode_image(src)
    output_format(dst, img.bit_depth)
    codes = grade_codes(
        img.codes,
        lut,
        interpolation=args.interpolation,
        device=args.device,
        backend=args.backend,
        strip_pixels=args.strip_pixels,
        on_strip=on_strip,
    )
    write_codes(dst, codes, icc_profile=img.icc_profile, exif=img.exif, quality=args.quality)
    notes = []
    if img.icc_profile:
        notes.append(
            f"ICC profile '{_profile_name(img.icc_profile)}' carried over (LUT applied to stored values)"
        )
    return "; ".join(notes + input_notes(img))


def input_notes(img: DecodedImage) -> list[str]:
    """What of a decoded input is not in its output: alpha, and frames after the first."""
    notes = ["alpha channel dropped"] if img.dropped_alpha else []
    if img.frames > 1:
        notes.append(f"only the first of its {img.frames} frames is used")
    return notes


if __name__ == "__main__":
    sys.exit(main())
