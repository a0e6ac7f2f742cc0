"""Grade photos with a trained model: ``python -m img2lut.predict MODEL IMAGES... --out DIR``.

For each image the model predicts a LUT (:mod:`img2lut.prediction`); the LUT is written as
``DIR/NAME.cube`` (``--format``: ``.3dl``, ``.spi3d``, ``.csp`` or ``.clf`` instead) and applied to the
full-resolution image, written as ``DIR/NAME.<ext>`` in the input's format (PNG, JPEG, TIFF, DPX; other
formats become PNG) and bit depth, upright (EXIF orientation applied), with its ICC profile and EXIF (DPX:
byte order, transfer, colorimetric) carried over. An EXR is graded as floats into an EXR
(:mod:`lutkern.exr_dpx`). ``--strength S`` blends each predicted LUT with the identity
(:func:`lutkern.lut_at_strength`): the ``.cube`` holds the blended LUT and says so in a comment. The image
is graded with the LUT exactly as written in the file (its decimals, a ``.3dl``'s integer codes), so
``python -m lutkern.apply --lut NAME.cube`` reproduces it. Both files are written, or neither.

Memory: the image is decoded once to integer codes; the small copy the CNN sees and the grading both
work on horizontal strips of about 1 Mpx (:mod:`lutkern.grading`), so a 50 Mpx photo needs its codes
plus a few tens of MiB, never a full-size float copy (an EXR is held as its float32 pixels).
"""

from __future__ import annotations

import argparse
import bisect
import csv
import re
import sys
from pathlib import Path

import numpy as np
import torch

import lutkern
from lutkern.cli import (
    LUT_3D_FORMATS,
    CommandParser,
    add_device_flags,
    add_format_flag,
    add_strength_flag,
    check_device,
    console,
    float_in,
    int_in,
    process_files,
    run_command,
)
from lutkern.cube import CubeLUT
from lutkern.files import OutputSet, check_output, shared_names
from lutkern.formats import lut_text, parse_lut
from lutkern.grading import STRIP_PIXELS, at_strength, check_exr_output, grade_codes, grade_exr, input_notes
from lutkern.imageio import (
    FLOAT_FORMATS,
    FORMATS,
    decode_image,
    is_float_image,
    output_format,
    read_float_image,
    write_codes,
)
from lutkern.video import (
    VIDEO_EXTENSIONS,
    check_encoder,
    encoder_options,
    probe_video,
    read_frames,
    transcode,
)

from .image_stats import codes_stats
from .prediction import LUTPredictor, load
from .shots import CUT_THRESHOLD, ShotTracker

PROG = "python -m img2lut.predict"


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description="Grade photos with a trained model and write each "
                      "photo's predicted LUT as NAME.cube beside the graded NAME.<ext>.")
    p.add_argument("checkpoint", type=Path, metavar="MODEL",
                   help="model.pt (or checkpoint.pt) written by python -m img2lut.train")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="photos (PNG, JPEG, TIFF, ...)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (made if missing)")
    p.add_argument("--cube-only", action="store_true", help="write only the LUT file, not the graded image")
    add_format_flag(p, what=" of each predicted LUT, NAME.<format>")
    p.add_argument("--interpolation", choices=lutkern.INTERPOLATIONS,
                   help="how the LUT is applied (default: the one the model was trained with)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    p.add_argument("--quality", type=int_in(1, 100), default=95, help="JPEG quality, 1-100 (default 95)")
    add_strength_flag(p)
    p.add_argument("--per-frame", action="store_true",
                   help="videos: grade each frame with its own LUT instead of one LUT per shot (flickers)")
    p.add_argument("--cut-threshold", type=float_in(0, 2), default=CUT_THRESHOLD,
                   help=f"videos: colour-histogram distance (0-2) between frames that makes a cut "
                   f"(default {CUT_THRESHOLD})")
    p.add_argument("--codec", help="videos: the encoder (as python -m lutkern.apply)")
    p.add_argument("--crf", type=int_in(0, 51), help="videos: the encoder's CRF quality")
    add_device_flags(p)
    p.add_argument("--strip-pixels", type=int_in(1, 1 << 30), default=STRIP_PIXELS, help=argparse.SUPPRESS)
    return p


def output_paths(src: Path, out: Path, lut_format: str = ".cube") -> tuple[Path, Path]:
    """``(image, LUT file)`` written for ``src``: the input's extension when writable, else ``.png``; the
    LUT's, ``lut_format``."""
    ext = src.suffix if src.suffix.lower() in FORMATS or src.suffix.lower() in FLOAT_FORMATS else ".png"
    return out / (src.stem + ext), out / (src.stem + lut_format)


def _is_video(src: Path) -> bool:
    return src.suffix.lower() in VIDEO_EXTENSIONS


def _shot_cube(src: Path, out: Path, k: int, lut_format: str) -> Path:
    """Shot ``k`` (from 1)'s LUT file of the video ``src``."""
    return out / f"{src.stem}.shot{k:03d}{lut_format}"


def _shot_names(src: Path) -> re.Pattern:
    """The names of the shot LUT files of ``src``, in any 3D LUT format."""
    formats = "|".join(map(re.escape, LUT_3D_FORMATS))
    return re.compile(re.escape(src.stem) + r"\.shot\d{3,}(?:" + formats + ")")


def _claim(src: Path, cube_only: bool, lut_format: str) -> tuple[Path, list[str], re.Pattern | None]:
    """What ``src`` may write (see :func:`lutkern.files.shared_names`): a video its graded copy, its edit
    list and ``NAME.shotNNN.<format>`` files (how many is known only after the prediction pass)."""
    if _is_video(src):
        names = [f"{src.stem}.shots.csv"] + ([] if cube_only else [src.name])
        return src, names, _shot_names(src)
    image, cube = output_paths(src, Path(), lut_format)
    return src, [cube.name] + ([] if cube_only else [image.name]), None


def _predict_file(src: Path, args, predictor: LUTPredictor, refused: str | None, on_strip) -> str:
    """Write the LUT file (and graded image) for ``src``; returns a note for the console or ''."""
    if refused:
        raise ValueError(refused)
    if _is_video(src):
        return _predict_video(src, args, predictor, on_strip)
    dst, cube_path = output_paths(src, args.out, args.format)
    for path in (cube_path,) if args.cube_only else (dst, cube_path):
        check_output(path, [*args.images, args.checkpoint], overwrite=args.overwrite)
    floats = is_float_image(src)
    if floats:  # an EXR: its floats are what the CNN sees (as in training) and what is graded
        img = read_float_image(src)
        if not args.cube_only:
            check_exr_output(dst)  # fail before any work
        lut = predictor.predict_lut(img.pixels).cpu()
    else:
        img = decode_image(src)
        if not args.cube_only:
            output_format(dst, img.bit_depth)  # fail before any work
        lut = predictor.predict_lut_codes(img.codes, img.bit_depth)
    text = _lut_text(lut, "img2lut " + _safe(src.stem), args.strength, args.format)
    notes = "; ".join(img.notes if floats else input_notes(img))
    with OutputSet(args.out, replace=args.overwrite) as outputs:  # both files, or neither
        if not args.cube_only:
            # Grade with the LUT as the file stores it (6 decimals, or integer codes), so the file
            # reproduces the image.
            cube = parse_lut(text, str(cube_path))
            grading = dict(interpolation=args.interpolation, device=args.device, backend=args.backend,
                           strip_pixels=args.strip_pixels, on_strip=on_strip)
            if floats:
                notes = grade_exr(img, outputs.path(dst), cube, **grading)
            else:
                grade_codes(img.codes, cube, bit_depth=img.bit_depth, **grading)
                write_codes(outputs.path(dst), img.codes, bit_depth=img.bit_depth,
                            icc_profile=img.icc_profile, exif=img.exif, quality=args.quality, dpx=img.dpx)
        _write_text(outputs.path(cube_path), text)
        outputs.commit()
    return notes


def _lut_text(lut: torch.Tensor, title: str, strength: float, lut_format: str) -> str:
    """The text of a predicted LUT ``(S,S,S,3)`` at ``strength`` in ``lut_format``: below 1, the file holds
    the LUT blended with the identity, and its first comment says so (where the format has comments)."""
    if strength == 1:
        return lut_text(lut, lut_format, title=title)
    note = (f"strength {strength:g}: the predicted LUT blended with the identity, "
            "identity + S * (LUT - identity)")
    return lut_text(CubeLUT(lutkern.lut_at_strength(lut, strength), comments=[note]), lut_format, title=title)


def _write_text(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def _predict_video(src: Path, args, predictor: LUTPredictor, on_progress) -> str:
    """Grade a video with one predicted LUT per shot (``--per-frame``: each frame its own), writing the
    graded video, ``NAME.shotNNN.<format>`` per shot and the edit list ``NAME.shots.csv``: all of them, in
    place of an earlier run's set (whose extra shots' LUT files go, in any format), or none."""
    dst, edits = args.out / src.name, args.out / f"{src.stem}.shots.csv"
    inputs = [*args.images, args.checkpoint]
    for path in (edits,) if args.cube_only else (dst, edits):
        check_output(path, inputs, overwrite=args.overwrite)
    info = probe_video(src)
    if not args.cube_only:
        check_encoder(src, dst, args.codec, args.crf)  # before the prediction pass, not after it
    tracker, times, ends = ShotTracker(args.cut_threshold), [], []
    for frame in read_frames(src):  # pass 1: a LUT per frame, the cuts, each shot's mean LUT
        tracker.add(*_frame_lut(predictor, frame.codes))
        times.append(frame.time)
        ends.append(frame.time + frame.duration)
        if on_progress is not None and info.frames:
            on_progress(0.5 / info.frames)
    if not times:
        raise ValueError(f"{src}: no frames to grade")
    shots = tracker.shots
    cubes = [_shot_cube(src, args.out, k + 1, args.format) for k in range(len(shots))]
    for path in cubes:
        check_output(path, inputs, overwrite=args.overwrite)
    texts = [_lut_text(s.lut, f"img2lut {_safe(src.stem)} shot {k + 1}", args.strength, args.format)
             for k, s in enumerate(shots)]
    stale = _earlier_cubes(edits, src) - set(cubes) if args.overwrite else set()
    notes = []
    with OutputSet(args.out, replace=args.overwrite) as outputs:
        if not args.cube_only:
            luts = [parse_lut(text, str(path)) for text, path in zip(texts, cubes, strict=True)]
            firsts = [s.first for s in shots]

            def grade(codes, index: int):
                if args.per_frame:
                    lut = at_strength(CubeLUT(_frame_lut(predictor, codes)[1]), args.strength)
                else:
                    lut = luts[bisect.bisect_right(firsts, index) - 1]
                return grade_codes(codes, lut, interpolation=args.interpolation, device=args.device,
                                   backend=args.backend)

            report = transcode(src, outputs.path(dst), grade, codec=args.codec, crf=args.crf,
                               on_progress=None if on_progress is None else lambda f: on_progress(0.5 * f))
            notes = list(report.notes)
        for text, path in zip(texts, cubes, strict=True):
            _write_text(outputs.path(path), text)
        _write_edits(outputs.path(edits), shots, times, ends, cubes)  # named last: put in place last
        outputs.commit(remove=sorted(stale))
    flicker = sum(s.flicker * (s.frames - 1) for s in shots) / max(1, len(times) - len(shots))
    how = "each frame its own LUT" if args.per_frame else "one LUT per shot"
    return "; ".join([f"{len(times)} frames, {len(shots)} shots ({edits.name}), graded with {how}; the "
                      f"per-frame predictions change by {flicker:.4f} RMS from frame to frame within a shot",
                      *notes])


def _earlier_cubes(edits: Path, src: Path) -> set[Path]:
    """The LUT files an earlier run's edit list ``edits`` names for ``src`` (only names of the form
    ``NAME.shotNNN.<3D LUT format>``, in the same folder: the file is data, not a list of paths to
    delete)."""
    if not edits.is_file():
        return set()
    shot = _shot_names(src)
    try:
        with edits.open(newline="", encoding="utf-8") as f:
            names = [row.get("cube") or "" for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error):
        return set()
    return {edits.parent / name for name in names if shot.fullmatch(name)}


def _frame_lut(predictor: LUTPredictor, codes) -> tuple[torch.Tensor, torch.Tensor]:
    """The thumbnail the CNN sees of a frame's ``codes`` ``(H,W,3)`` and the LUT it predicts."""
    depth = 8 if codes.dtype == np.uint8 else 16
    thumb = predictor.thumbnail(codes, depth)
    with torch.no_grad():
        return thumb[0].cpu(), predictor.model.predict_lut(thumb, codes_stats(codes, depth))[0].cpu()


def _safe(name: str) -> str:
    return re.sub(r'["\r\n]', "_", name)


def _write_edits(path: Path, shots, times: list[float], ends: list[float], cubes: list[Path]) -> None:
    """The edit list: one CSV row per shot, its frames (first, last), its time span in seconds (start of
    its first frame, end of its last: where the next frame starts, so variable frame rates included,
    shots meet without overlap) and its LUT file (the column is named ``cube`` whatever the format)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["shot", "first_frame", "last_frame", "start_seconds", "end_seconds", "cube"])
        for k, (shot, cube) in enumerate(zip(shots, cubes, strict=True)):
            start, end = times[shot.first], ends[shot.last]
            writer.writerow([k + 1, shot.first, shot.last, f"{start:.6f}", f"{end:.6f}", cube.name])


def main(argv: list[str] | None = None) -> int:
    return run_command(_parser(), argv, _run, errors=(ValueError, OSError, RuntimeError))


def _run(args: argparse.Namespace) -> int:
    args.device = check_device(args.device, args.backend)
    if (args.codec or args.crf is not None) and not args.cube_only and any(map(_is_video, args.images)):
        encoder_options(args.codec or "libx264", args.crf)  # an unusable encoder: before any work
    predictor = load(args.checkpoint, args.device)
    predictor.model.backend = args.backend
    args.interpolation = args.interpolation or predictor.interpolation
    args.out.mkdir(parents=True, exist_ok=True)
    out = console()
    # Names that two inputs would share, found before anything is written; process_files calls the
    # function once per input, in order.
    refusals = iter(shared_names([_claim(src, args.cube_only, args.format) for src in args.images]))
    failed = process_files(
        args.images, lambda src, on_strip: _predict_file(src, args, predictor, next(refusals), on_strip), out,
        label="grading", errors=(ValueError, OSError, RuntimeError),
    )
    what = "LUTs" if args.cube_only else "graded images and LUTs"
    out.print(f"{len(args.images) - failed} {what} written to {args.out}, {failed} failed", markup=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
