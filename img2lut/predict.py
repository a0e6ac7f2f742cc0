"""Grade photos with a trained model: ``python -m img2lut.predict CHECKPOINT IMAGES... --out DIR``.

For each image the CNN sees a small copy, made as in training (resized to the checkpoint's
``image_size``, then to its ``cnn_size``), and predicts a LUT; the LUT is written as ``DIR/NAME.cube``
and applied to the full-resolution image, written as ``DIR/NAME.<ext>`` in the input's format (PNG,
JPEG, TIFF; other formats become PNG) and bit depth, upright (EXIF orientation applied), with its ICC
profile and EXIF carried over. The image is graded with the LUT exactly as written in the ``.cube``
file, so ``python -m lutkern.apply --lut NAME.cube`` reproduces it.

Memory: the image is decoded once to integer codes; the small copy and the grading both work on
horizontal strips of about 1 Mpx (see :mod:`lutkern.apply`), so a 50 Mpx photo needs its codes plus
a few tens of MiB, never a full-size float copy.

Python API::

    import img2lut
    model = img2lut.load("runs/models/demo/model.pt")   # or checkpoint.pt: the same kept model
    lut = model.predict_lut(image)      # (3,H,W) -> (S,S,S,3); (B,3,H,W) -> (B,S,S,S,3); or a file path
    graded = model.apply(image)         # the predicted LUT applied to image
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

import lutkern
from lutkern._atomic import atomic_open
from lutkern._cli import CommandParser, check_device, int_in, one_line, warnings_on_one_line
from lutkern._outputs import check_output
from lutkern.apply import DEFAULT_STRIP_PIXELS, grade_codes, input_notes, process_files
from lutkern.cube import cube_text, parse_cube
from lutkern.imageio import FORMATS, codes_to_pixels, decode_image, output_format, write_codes
from lutkern.reference.apply import INTERPOLATIONS

from . import checkpoint as ckpt
from .data import resize
from .model import ResNetLUTGenerator

PROG = "python -m img2lut.predict"
_MIN_CNN_SIZE = 16  # three stride-2 blocks; as in training


def thumbnail_from_codes(codes: np.ndarray, bit_depth: int, size: int,
                         strip_pixels: int = DEFAULT_STRIP_PIXELS) -> torch.Tensor:
    """``(1,3,size,size)`` float32: :func:`img2lut.data.resize` of the image ``codes`` ``(H,W,3)``.

    Antialiased bilinear resizing is separable: each strip of rows is resized horizontally, then the
    ``(H,size)`` result vertically, which equals resizing the whole float image (bitwise on CPU) while
    only one float strip exists at a time.
    """
    h, w, _ = codes.shape
    rows = max(1, strip_pixels // max(w, 1))
    parts = []
    for y in range(0, h, rows):
        strip = codes_to_pixels(codes[y : y + rows], bit_depth).unsqueeze(0)
        parts.append(F.interpolate(strip, size=(strip.shape[2], size), mode="bilinear", antialias=True,
                                   align_corners=False))
    return resize(torch.cat(parts, dim=2), size)


@dataclass
class LUTPredictor:
    """A trained model ready to predict LUTs: what :func:`load` returns.

    model: the CNN in eval mode on ``device``. image_size, cnn_size: the training sizes; the CNN sees an
    image resized to ``image_size`` then to ``cnn_size`` (square, aspect not kept), as in training.
    """

    model: ResNetLUTGenerator
    image_size: int
    cnn_size: int
    device: torch.device

    @property
    def lut_size(self) -> int:
        return self.model.lut_size

    @property
    def interpolation(self) -> str:
        """The interpolation the model was trained with."""
        return self.model.interpolation

    def cnn_input(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,3,cnn_size,cnn_size)`` on ``device``: what the CNN sees of ``images`` ``(B,3,H,W)``."""
        return resize(resize(images.float(), self.image_size), self.cnn_size).to(self.device)

    @torch.no_grad()
    def predict_lut(self, image: torch.Tensor | str | os.PathLike) -> torch.Tensor:
        """The LUT predicted for ``image``, float32, ``lut[..., b, g, r, c]`` (in (0,1) for the direct
        head; the basis and curves heads' values may leave [0,1] a little, and are applied and exported
        as they are).

        image: ``(3,H,W)`` -> ``(S,S,S,3)``; ``(B,3,H,W)`` -> ``(B,S,S,S,3)`` (RGB float in [0,1], on any
        device; the LUT is returned on the image's device); or the path of an image file -> ``(S,S,S,3)``
        on the CPU (decoded as :func:`lutkern.imageio.read_image` does, without a full-size float copy).
        """
        if isinstance(image, (str, os.PathLike)):
            decoded = decode_image(image)
            return self.predict_lut_codes(decoded.codes, decoded.bit_depth)
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"image must be a tensor or a file path, got {type(image).__name__}")
        if image.dim() not in (3, 4) or image.shape[-3] != 3 or not image.is_floating_point():
            raise ValueError(f"image must be float (3,H,W) or (B,3,H,W), got {image.dtype} "
                             f"{tuple(image.shape)}")
        batch = image if image.dim() == 4 else image.unsqueeze(0)
        lut = self.model.predict_lut(self.cnn_input(batch)).to(image.device)
        return lut if image.dim() == 4 else lut[0]

    @torch.no_grad()
    def predict_lut_codes(self, codes: np.ndarray, bit_depth: int) -> torch.Tensor:
        """``(S,S,S,3)`` on the CPU for an image given as ``(H,W,3)`` uint8/uint16 ``codes``."""
        thumb = thumbnail_from_codes(codes, bit_depth, self.image_size)
        return self.model.predict_lut(self.cnn_input(thumb))[0].cpu()

    def apply(self, image: torch.Tensor, interpolation: str | None = None) -> torch.Tensor:
        """``image`` ``(3,H,W)`` or ``(B,3,H,W)`` graded by the LUT predicted for it (same shape)."""
        lut = self.predict_lut(image)
        return lutkern.apply_lut(image, lut, interpolation=interpolation or self.interpolation)


def _size_setting(checkpoint, config: dict, key: str, default: int) -> int:
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ckpt.CheckpointError(f"{checkpoint}: the training config has an invalid {key}: {value!r}")
    return value


def load(checkpoint: str | os.PathLike, device: str | torch.device | None = None) -> LUTPredictor:
    """Load a trained model from ``checkpoint`` (read with ``weights_only=True``) onto ``device``
    (default: CUDA when available, else the CPU).

    Raises :class:`img2lut.checkpoint.CheckpointError` for a missing, corrupt or foreign file, or
    weights that do not fit the architecture the file declares (e.g. another LUT size).
    """
    device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
    try:
        payload = ckpt.load_checkpoint(checkpoint)
    except ckpt.CheckpointError as exc:
        if isinstance(exc.__cause__, pickle.UnpicklingError):  # instead of torch's advice to load it unsafely
            raise ckpt.CheckpointError(
                f"{checkpoint}: not an img2lut checkpoint (not a torch file, or it holds objects other than "
                "tensors and plain values, which are never loaded)") from exc
        raise
    try:
        model = ckpt.model_from_checkpoint(payload)
    except ckpt.CheckpointError as exc:
        raise ckpt.CheckpointError(f"{checkpoint}: {exc}") from exc
    config = payload["config"] if isinstance(payload["config"], dict) else {}
    image_size = _size_setting(checkpoint, config, "image_size", 256)
    cnn_size = _size_setting(checkpoint, config, "cnn_size", 0) or image_size
    if min(image_size, cnn_size) < _MIN_CNN_SIZE:
        raise ckpt.CheckpointError(f"{checkpoint}: image_size {image_size} / cnn_size {cnn_size} below "
                                   f"{_MIN_CNN_SIZE}")
    return LUTPredictor(model.to(device), image_size, cnn_size, device)


# ----------------------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description="Grade photos with a trained model and write each "
                                "photo's predicted LUT as NAME.cube beside the graded NAME.<ext>.")
    p.add_argument("checkpoint", type=Path, help="checkpoint.pt written by python -m img2lut.train")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="photos (PNG, JPEG, TIFF, ...)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (made if missing)")
    p.add_argument("--cube-only", action="store_true", help="write only NAME.cube, not the graded image")
    p.add_argument("--interpolation", choices=INTERPOLATIONS,
                   help="how the LUT is applied (default: the one the model was trained with)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    p.add_argument("--quality", type=int_in(1, 100), default=95, help="JPEG quality, 1-100 (default 95)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backend", choices=("triton", "torch"), help="apply_lut backend (default: automatic)")
    p.add_argument("--strip-pixels", type=int, default=DEFAULT_STRIP_PIXELS, help=argparse.SUPPRESS)
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
    args = _parser().parse_args(argv)
    with warnings_on_one_line(PROG):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    err = Console(stderr=True, highlight=False, soft_wrap=True)  # soft wrap: one error, one line
    try:
        if args.strip_pixels < 1:
            raise ValueError(f"--strip-pixels must be >= 1, got {args.strip_pixels}")
        args.device = check_device(args.device, args.backend)
        predictor = load(args.checkpoint, args.device)
        args.interpolation = args.interpolation or predictor.interpolation
        args.out.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError, RuntimeError) as exc:  # CheckpointError is a ValueError
        err.print(f"{PROG}: error: {one_line(exc)}", markup=False)
        return 2
    seen: dict[str, Path] = {}
    failed = process_files(
        args.images, lambda src, on_strip: _predict_file(src, args, predictor, seen, on_strip), err,
        label="grading", errors=(ValueError, OSError, RuntimeError),
    )
    what = "LUTs" if args.cube_only else "graded images and LUTs"
    err.print(f"{len(args.images) - failed} {what} written to {args.out}, {failed} failed", markup=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
