"""Grade photos with a trained model: ``python -m img2lut.predict MODEL IMAGES... --out DIR``.

For each image the model predicts a LUT (:mod:`img2lut.prediction`); the LUT is written as
``DIR/NAME.cube`` and applied to the full-resolution image, written as ``DIR/NAME.<ext>`` in the input's
format (PNG, JPEG, TIFF, DPX; other formats become PNG) and bit depth, upright (EXIF orientation applied),
with its ICC profile and EXIF (DPX: byte order, transfer, colorimetric) carried over. An EXR is graded as
floats into an EXR (:mod:`lutkern.exr_dpx`). ``--strength S`` blends each predicted LUT with the identity
(:func:`lutkern.lut_at_strength`): the ``.cube`` holds the blended LUT and says so in a comment. The
image is graded with the LUT exactly as written in the ``.cube`` file, so
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
    CommandParser,
    add_device_flags,
    add_strength_flag,
    check_device,
    console,
    int_in,
    process_files,
    run_command,
)
from lutkern.cube import CubeLUT, cube_text, parse_cube
from lutkern.files import atomic_open, check_output
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
from lutkern.video import VIDEO_EXTENSIONS, probe_video, read_frames, transcode

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
    p.add_argument("--cube-only", action="store_true", help="write only NAME.cube, not the graded image")
    p.add_argument("--interpolation", choices=lutkern.INTERPOLATIONS,
                   help="how the LUT is applied (default: the one the model was trained with)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    p.add_argument("--quality", type=int_in(1, 100), default=95, help="JPEG quality, 1-100 (default 95)")
    add_strength_flag(p)
    p.add_argument("--per-frame", action="store_true",
                   help="videos: grade each frame with its own LUT instead of one LUT per shot (flickers)")
    p.add_argument("--cut-threshold", type=float, default=CUT_THRESHOLD,
                   help=f"videos: colour-histogram distance (0-2) between frames that makes a cut "
                   f"(default {CUT_THRESHOLD})")
    p.add_argument("--codec", help="videos: the encoder (as python -m lutkern.apply)")
    p.add_argument("--crf", type=int_in(0, 51), help="videos: the encoder's CRF quality")
    add_device_flags(p)
    p.add_argument("--strip-pixels", type=int_in(1, 1 << 30), default=STRIP_PIXELS, help=argparse.SUPPRESS)
    return p


def output_paths(src: Path, out: Path) -> tuple[Path, Path]:
    """``(image, cube)`` written for ``src``: the input's extension when writable, else ``.png``."""
    ext = src.suffix if src.suffix.lower() in FORMATS or src.suffix.lower() in FLOAT_FORMATS else ".png"
    return out / (src.stem + ext), out / (src.stem + ".cube")


def _predict_file(src: Path, args, predictor: LUTPredictor, seen: dict[str, Path], on_strip) -> str:
    """Write the ``.cube`` (and graded image) for ``src``; returns a note for the console or ''."""
    if src.suffix.lower() in VIDEO_EXTENSIONS:
        return _predict_video(src, args, predictor, seen, on_strip)
    dst, cube_path = output_paths(src, args.out)
    if src.stem in seen:
        raise ValueError(f"same output name as {seen[src.stem]}: {cube_path} would be written twice")
    targets = (cube_path,) if args.cube_only else (dst, cube_path)
    for path in targets:
        check_output(path, [*args.images, args.checkpoint], overwrite=args.overwrite)
    seen[src.stem] = src
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
    text = _lut_text(lut, "img2lut " + _safe(src.stem), args.strength)
    notes = "; ".join(img.notes if floats else input_notes(img))
    if not args.cube_only:
        # Grade with the LUT as the file stores it (6 decimals), so the .cube reproduces the image exactly.
        cube = parse_cube(text, str(cube_path))
        grading = dict(interpolation=args.interpolation, device=args.device, backend=args.backend,
                       strip_pixels=args.strip_pixels, on_strip=on_strip)
        if floats:
            notes = grade_exr(img, dst, cube, **grading)
        else:
            grade_codes(img.codes, cube, bit_depth=img.bit_depth, **grading)
            write_codes(dst, img.codes, bit_depth=img.bit_depth, icc_profile=img.icc_profile, exif=img.exif,
                        quality=args.quality, dpx=img.dpx)
    try:  # the .cube last: a failure anywhere leaves neither file
        with atomic_open(cube_path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    except BaseException:
        if not args.cube_only:
            dst.unlink(missing_ok=True)
        raise
    return notes


def _lut_text(lut: torch.Tensor, title: str, strength: float) -> str:
    """The ``.cube`` text of a predicted LUT ``(S,S,S,3)`` at ``strength``: below 1, the file holds the
    LUT blended with the identity, and its first comment says so."""
    if strength == 1:
        return cube_text(lut, title=title)
    note = (f"strength {strength:g}: the predicted LUT blended with the identity, "
            "identity + S * (LUT - identity)")
    return cube_text(CubeLUT(lutkern.lut_at_strength(lut, strength), comments=[note]), title=title)


def _predict_video(src: Path, args, predictor: LUTPredictor, seen: dict[str, Path], on_progress) -> str:
    """Grade a video with one predicted LUT per shot (``--per-frame``: each frame its own), writing the
    graded video, ``NAME.shotNNN.cube`` per shot and the edit list ``NAME.shots.csv``; or all or none."""
    dst, edits = args.out / src.name, args.out / f"{src.stem}.shots.csv"
    if src.stem in seen:
        raise ValueError(f"same output name as {seen[src.stem]}: {edits} would be written twice")
    inputs = [*args.images, args.checkpoint]
    for path in (edits,) if args.cube_only else (dst, edits):
        check_output(path, inputs, overwrite=args.overwrite)
    seen[src.stem] = src
    info = probe_video(src)
    tracker, times = ShotTracker(args.cut_threshold), []
    for frame in read_frames(src):  # pass 1: a LUT per frame, the cuts, each shot's mean LUT
        tracker.add(*_frame_lut(predictor, frame.codes))
        times.append(frame.time)
        if on_progress is not None and info.frames:
            on_progress(0.5 / info.frames)
    shots = tracker.shots
    cubes = [args.out / f"{src.stem}.shot{k + 1:03d}.cube" for k in range(len(shots))]
    for path in cubes:
        check_output(path, inputs, overwrite=args.overwrite)
    texts = [_lut_text(s.lut, f"img2lut {_safe(src.stem)} shot {k + 1}", args.strength)
             for k, s in enumerate(shots)]
    if not args.cube_only:
        luts = [parse_cube(text, str(path)) for text, path in zip(texts, cubes, strict=True)]
        firsts = [s.first for s in shots]

        def grade(codes, index: int):
            if args.per_frame:
                lut = at_strength(CubeLUT(_frame_lut(predictor, codes)[1]), args.strength)
            else:
                lut = luts[bisect.bisect_right(firsts, index) - 1]
            return grade_codes(codes, lut, interpolation=args.interpolation, device=args.device,
                               backend=args.backend)

        transcode(src, dst, grade, codec=args.codec, crf=args.crf,
                  on_progress=None if on_progress is None else lambda f: on_progress(0.5 * f))
    try:  # the .cube files and the edit list last: a failure leaves no part of the outputs
        for text, path in zip(texts, cubes, strict=True):
            with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
        _write_edits(edits, shots, times, info.rate, cubes)
    except BaseException:
        for path in [*cubes, edits] + ([] if args.cube_only else [dst]):
            path.unlink(missing_ok=True)
        raise
    flicker = sum(s.flicker * (s.frames - 1) for s in shots) / max(1, len(times) - len(shots))
    how = "each frame its own LUT" if args.per_frame else "one LUT per shot"
    return (f"{len(times)} frames, {len(shots)} shots ({edits.name}), graded with {how}; the per-frame "
            f"predictions change by {flicker:.4f} RMS from frame to frame within a shot")


def _frame_lut(predictor: LUTPredictor, codes) -> tuple[torch.Tensor, torch.Tensor]:
    """The thumbnail the CNN sees of a frame's ``codes`` ``(H,W,3)`` and the LUT it predicts."""
    thumb = predictor.thumbnail(codes, 8 if codes.dtype == np.uint8 else 16)
    with torch.no_grad():
        return thumb[0].cpu(), predictor.model.predict_lut(thumb)[0].cpu()


def _safe(name: str) -> str:
    return re.sub(r'["\r\n]', "_", name)


def _write_edits(path: Path, shots, times: list[float], rate, cubes: list[Path]) -> None:
    """The edit list: one CSV row per shot, its frames (first, last), its time span in seconds (start of
    its first frame, end of its last) and its ``.cube``."""
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["shot", "first_frame", "last_frame", "start_seconds", "end_seconds", "cube"])
        for k, (shot, cube) in enumerate(zip(shots, cubes, strict=True)):
            start, end = times[shot.first], times[shot.last] + float(1 / rate)
            writer.writerow([k + 1, shot.first, shot.last, f"{start:.6f}", f"{end:.6f}", cube.name])


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
