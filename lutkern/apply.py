"""Grade photos and videos: ``python -m lutkern.apply --lut FILE.cube|HALD.png|LOOK FILES... --out DIR``.

Each image is written to ``DIR`` under its own name, in its own format and bit depth (PNG 8/16-bit, JPEG,
TIFF 8/16-bit, DPX 8/10/12/16-bit), upright (EXIF orientation applied, the tag reset), with its ICC
profile and EXIF (DPX: byte order, transfer and colorimetric fields) carried over. The LUT is applied to
the stored code values: no colour management, so the profile still describes the output. An EXR is
graded as floats and written as EXR with its precision (half or float) and, where FFmpeg writes it, its
compression: values outside the LUT's input domain are clamped to it, the LUT's output is not clamped.
``--strength S`` applies the LUT at partial strength (:func:`lutkern.grading.at_strength`).
Inputs are never overwritten, existing outputs only with ``--overwrite``. An unreadable file gets a
one-line error and the batch goes on; the exit status is 1 if any file failed, 2 for bad arguments.

A video (:data:`lutkern.video.VIDEO_EXTENSIONS`: .mp4 .mov .mkv .webm ...) is graded frame by frame into a
video of the same container (:func:`lutkern.video.grade_video`): same size, frame rate and timestamps,
colour tags and, where the encoder allows, bit depth; audio copied packet for packet. ``--codec`` picks the
encoder (default libx264 CRF 18 for 8-bit sources, libx265 10-bit for deeper ones; ``ffv1`` is lossless),
``--crf`` its quality. Videos need PyAV (``pip install 'lutkern[video]'``).

Memory: an image is decoded once to integer codes and graded in place, strip by strip
(:mod:`lutkern.grading`): about one integer image plus two float strips (plus Pillow's own buffer while
decoding and encoding). A video holds a few frames at a time (and the encoder's look-ahead). Past the first
16.7 M pixels of 8-bit images (4 photos of 4 MP, 18 frames of 720p), 8-bit codes are looked up in a table of
every code graded (:class:`lutkern.grading.CodesGrader`, 48 MiB): the same codes for less work.

Start-up: on the CPU, a ``.cube`` file with a plain 3D table, at full strength, grades 8 and 16-bit
images and videos without importing torch (:func:`lutkern.grading.codes_table`); torch is imported
only for what needs it (CUDA, the Triton backend, looks, Hald images, shapers, domains, ``--strength``,
DPX of 10 or 12 bits, EXR). ``LUTKERN_TORCH_FREE=0`` always imports it (the same bytes come out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .cli import (
    CommandParser,
    add_device_flags,
    add_strength_flag,
    check_device,
    console,
    int_in,
    process_files,
    run_command,
)
from .conventions import INTERPOLATIONS, LOOK_NAMES
from .cube import CubeLUT
from .files import OutputSet, check_output, shared_names
from .grading import (
    STRIP_PIXELS,
    Blend,
    CodesGrader,
    at_strength,
    codes_table,
    cube_tables,
    grade_exr,
    input_notes,
    load_lut,
    profile_name,
)
from .imageio import (
    FLOAT_FORMATS,
    FORMATS,
    decode_image,
    is_float_image,
    output_format,
    read_float_image,
    write_codes,
)
from .video import DEFAULT_CRF, VIDEO_EXTENSIONS, encoder_options, grade_video

if TYPE_CHECKING:
    from .formats import LUTChain  # the LUT formats import torch, which a .cube on the CPU does not need

PROG = "python -m lutkern.apply"


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--lut", required=True, help="a LUT file (.cube, .3dl, .spi1d, .spi3d, .csp, .clf), a "
                   "Hald CLUT .png/.tif, or a look: " + ", ".join(LOOK_NAMES))
    p.add_argument("--interpolation", default="trilinear", choices=INTERPOLATIONS)
    p.add_argument("--size", type=int_in(2, 256), default=33, help="LUT size of a built-in look (default 33)")
    add_strength_flag(p)
    p.add_argument("--out", required=True, type=Path, help="output folder (made if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    p.add_argument("--quality", type=int_in(1, 100), default=95, help="JPEG quality, 1-100 (default 95)")
    p.add_argument("--codec", help="video encoder (default: libx264, libx265 for sources deeper than 8 bits, "
                   "libvpx-vp9 into .webm; ffv1 is lossless)")
    p.add_argument("--crf", type=int_in(0, 51),
                   help=f"video quality of a CRF encoder (x264, x265, vp9), 0-51 (default {DEFAULT_CRF})")
    add_device_flags(p)
    p.add_argument("--strip-pixels", type=int_in(1, 1 << 30), default=STRIP_PIXELS, help=argparse.SUPPRESS)
    p.add_argument("images", nargs="+", type=Path, metavar="FILES", help="images and videos")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_command(_parser(), argv, _run)


def _run(args: argparse.Namespace) -> int:
    tables = cube_tables(args.lut)  # a .cube file, read once, without torch
    lut = codes_table(tables, args.strength, args.device, args.backend)  # None: torch is needed
    if lut is None:
        args.device = check_device(args.device, args.backend)
    if args.codec and any(_is_video(p) for p in args.images):
        encoder_options(args.codec, args.crf)  # an unknown encoder is a usage error, before any work
    if lut is None:
        full = load_lut(args.lut, args.size) if tables is None else tables.cube_lut()
        lut = at_strength(full, args.strength)
    args.out.mkdir(parents=True, exist_ok=True)
    out = console()
    # Names that two inputs would share, found before anything is written; process_files calls the
    # function once per input, in order.
    refusals = iter(shared_names([(src, [src.name], None) for src in args.images]))
    # One grader for all the images: past 16.7 M pixels of 8-bit images, a table lookup (CodesGrader).
    grader = CodesGrader(lut, interpolation=args.interpolation, device=args.device, backend=args.backend)
    failed = process_files(
        args.images, lambda src, on_strip: _grade_file(src, args, lut, grader, next(refusals), on_strip), out,
        label="grading",
    )
    out.print(f"{len(args.images) - failed} graded into {args.out}, {failed} failed", markup=False)
    return 1 if failed else 0


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _grade_file(src: Path, args, lut: CubeLUT | LUTChain | Blend | np.ndarray, grader: CodesGrader,
                refused: str | None, on_strip) -> str:
    """Grade one file into ``args.out``; returns a note for the console (ICC profile, alpha, video
    speed, what a video could not keep) or ''."""
    dst = args.out / src.name
    if src.suffix.lower() not in FORMATS and src.suffix.lower() not in FLOAT_FORMATS and not _is_video(src):
        videos = " ".join(sorted(VIDEO_EXTENSIONS))
        raise ValueError(f"unsupported image type {src.suffix!r} (PNG, JPEG, TIFF, DPX or EXR; "
                         f"videos: {videos})")
    if refused:
        raise ValueError(refused)
    check_output(dst, [*args.images, args.lut], overwrite=args.overwrite)
    with OutputSet(args.out, replace=args.overwrite) as outputs:
        if _is_video(src):
            note = _grade_video_file(src, outputs.path(dst), args, lut, on_strip)
            outputs.commit()
            return note
        if is_float_image(src):  # an EXR, graded as floats into an EXR
            note = grade_exr(read_float_image(src), outputs.path(dst), lut, interpolation=args.interpolation,
                             device=args.device, backend=args.backend, strip_pixels=args.strip_pixels,
                             on_strip=on_strip)
            outputs.commit()
            return note
        img = decode_image(src)
        output_format(dst, img.bit_depth)
        codes = grader(img.codes, bit_depth=img.bit_depth, strip_pixels=args.strip_pixels, on_strip=on_strip)
        write_codes(outputs.path(dst), codes, bit_depth=img.bit_depth, icc_profile=img.icc_profile,
                    exif=img.exif, quality=args.quality, dpx=img.dpx)
        outputs.commit()
    notes = []
    if img.icc_profile:
        name = profile_name(img.icc_profile)
        notes.append(f"ICC profile '{name}' carried over (LUT applied to stored values)")
    return "; ".join(notes + input_notes(img))


def _grade_video_file(src: Path, dst: Path, args, lut: CubeLUT | Blend | np.ndarray, on_progress) -> str:
    report = grade_video(src, dst, lut, interpolation=args.interpolation, device=args.device,
                         backend=args.backend, codec=args.codec, crf=args.crf, on_progress=on_progress)
    note = (f"{report.frames} frames at {report.frames_per_second:.1f} frames/s "
            f"({report.codec} {report.pix_fmt}, audio streams copied: {report.audio_streams})")
    if report.dropped_streams:
        note += f"; {report.dropped_streams} other streams (subtitles, data, more video) not copied"
    return "; ".join([note, *report.notes])


if __name__ == "__main__":
    sys.exit(main())
