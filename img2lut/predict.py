"""Grade photos with a trained model: ``python -m img2lut.predict MODEL IMAGES... --out DIR``.

For each image the model predicts a LUT (:mod:`img2lut.prediction`); the LUT is written as
``DIR/NAME.cube`` and applied to the full-resolution image, written as ``DIR/NAME.<ext>`` in the input's
format (PNG, JPEG, TIFF; other formats become PNG) and bit depth, upright (EXIF orientation applied), with
its ICC profile and EXIF carried over. The image is graded with the LUT exactly as written in the
``.cube`` file, so ``python -m lutkern.apply --lut NAME.cube`` reproduces it. Both files are written, or
neither.

Memory: the image is decoded once to integer codes; the small copy the CNN sees and the grading both
work on horizontal strips of about 1 Mpx (:mod:`lutkern.grading`), so a 50 Mpx photo needs its codes
plus a few tens of MiB, never a full-size float copy.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import lutkern
from lutkern.cli import (
    CommandParser,
    add_device_flags,
    check_device,
    console,
    int_in,
    process_files,
    run_command,
)
from lutkern.cube import cube_text, parse_cube
from lutkern.files import atomic_open, check_output
from lutkern.grading import STRIP_PIXELS, grade_codes, input_notes
from lutkern.imageio import FORMATS, decode_image, output_format, write_codes

from .prediction import LUTPredictor, load

PROG = "python -m img2lut.predict"
INTERPOLATIONS = lutkern.INTERPOLATIONS


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description="Grade photos with a trained model and write each "
                      "photo's predicted LUT as NAME.cube beside the graded NAME.<ext>.")
    p.add_argument("checkpoint", type=Path, metavar="MODEL",
                   help="model.pt (or checkpoint.pt) written by python -m img2lut.train")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="photos (PNG, JPEG, TIFF, ...)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (made if missing)")
    p.add_argument("--cube-only", action="store_true", help="write only NAME.cube, not the graded image")
    p.add_argument("--interpolation", choices=INTERPOLATIONS,
                   help="how the LUT is applied (default: the one the model was trained with)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    p.add_argument("--quality", type=int_in(1, 100), default=95, help="JPEG quality, 1-100 (default 95)")
    add_device_flags(p)
    p.add_argument("--strip-pixels", type=int_in(1, 1 << 30), default=STRIP_PIXELS, help=argparse.SUPPRESS)
    return p


def output_paths(src: Path, out: Path) -> tuple[Path, Path]:
    """``(image, cube)`` written for ``src``: the input's extension when writable, else ``.png``."""
    ext = src.suffix if src.suffix.lower() in FORMATS else ".png"
    return out / (src.stem + ext), out / (src.stem + ".cube")


def _predict_file(src: Path, args, predictor: LUTPredictor, seen: dict[str, Path], on_strip) -> str:
    """Write the ``.cube`` (and graded image) for ``src``; returns a note for the console or ''."""
    dst, cube_path = output_paths(src, args.out)
    if src.stem in seen:
        raise ValueError(f"same output name as {seen[src.stem]}: {cube_path} would be written twice")
    targets = (cube_path,) if args.cube_only else (dst, cube_path)
    for path in targets:
        check_output(path, [*args.images, args.checkpoint], overwrite=args.overwrite)
    seen[src.stem] = src
    img = decode_image(src)
    if not args.cube_only:
        output_format(dst, img.bit_depth)  # fail before any work
    lut = predictor.predict_lut_codes(img.codes, img.bit_depth)
    text = cube_text(lut, title="img2lut " + re.sub(r'["\r\n]', "_", src.stem))
    if not args.cube_only:
        # Grade with the LUT as the file stores it (6 decimals), so the .cube reproduces the image exactly.
        grade_codes(img.codes, parse_cube(text, str(cube_path)), interpolation=args.interpolation,
                    device=args.device, backend=args.backend, strip_pixels=args.strip_pixels,
                    on_strip=on_strip)
        write_codes(dst, img.codes, icc_profile=img.icc_profile, exif=img.exif, quality=args.quality)
    try:  # the .cube last: a failure anywhere leaves neither file
        with atomic_open(cube_path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    except BaseException:
        if not args.cube_only:
            dst.unlink(missing_ok=True)
        raise
    return "; ".join(input_notes(img))


def main(argv: list[str] | None = None) -> int:
    return run_command(_parser(), argv, _run, errors=(ValueError, OSError, RuntimeError))


def _run(args: argparse.Namespace) -> int:
    args.device = check_device(args.device, args.backend)
    predictor = load(args.checkpoint, args.device)
    predictor.model.backend = args.backend
    args.interpolation = args.interpolation or predictor.interpolation
    args.out.mkdir(parents=True, exist_ok=True)
    out = console()
    seen: dict[str, Path] = {}
    failed = process_files(
        args.images, lambda src, on_strip: _predict_file(src, args, predictor, seen, on_strip), out,
        label="grading", errors=(ValueError, OSError, RuntimeError),
    )
    what = "LUTs" if args.cube_only else "graded images and LUTs"
    out.print(f"{len(args.images) - failed} {what} written to {args.out}, {failed} failed", markup=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
