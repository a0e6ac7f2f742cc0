"""One image of a training pair decoded at the size training needs, as compact codes.

A 12 MP photo trained on at 256x256 need not be decoded at 12 MP. :func:`decode_at_size` decodes a JPEG
at a reduced scale (libjpeg's DCT scaling, :func:`lutkern.imageio.decode_image`'s ``at_least``), reduces
any other image by a power of two with a box filter (Pillow's ``reduce`` for 8-bit codes, an average
pool for 16-bit ones), in both cases to no less than :data:`OVERSAMPLE` times the training size, and
then resizes exactly as :func:`img2lut.data.resize` does (antialiased bilinear, aspect not kept). The
reduction leaves the antialiased resize at least a 2x step of its own, which keeps the result within a
few codes of a full decode + resize (tests/test_decoding.py states the tolerance; docs/training.md the
measurements); EXR stills are decoded whole and resized, values as stored.

The result is held as codes of the source's depth, never float32: ``(3,S,S)`` uint8 for 8-bit sources
(value = code / 255), uint16 for 10, 12 and 16-bit sources (value = code / 65535, or the source's own
codes, value = code / 1023 for 10 bits, when the file is already at the training size), float32 for
EXR (the values themselves).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lutkern.imageio import decode_image, is_float_image, read_float_image

# The reduced decode keeps both sides at least this many times the training size.
OVERSAMPLE = 2
# What a code of each dtype is divided by to give a value in [0, 1] (float32: the value itself).
SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): 1.0}


@dataclass
class SizedImage:
    """codes: ``(3,S,S)`` uint8, uint16 or float32; scale: the code of value 1 (values are codes /
    scale); full_size: the file's ``(width, height)``, upright."""

    codes: np.ndarray
    scale: float
    full_size: tuple[int, int]


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(3,H,W)`` or ``(N,3,H,W)`` float to ``size x size`` (aspect not kept, as in the seed).

    Antialiased bilinear: its weights are non-negative and sum to 1, so [0,1] stays [0,1].
    """
    batch = images if images.dim() == 4 else images.unsqueeze(0)
    if batch.shape[-2:] != (size, size):
        batch = F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return batch if images.dim() == 4 else batch.squeeze(0)


def reduce_factor(width: int, height: int, size: int) -> int:
    """The largest power of two ``f`` that divides both sides and keeps both, divided by ``f``, at least
    ``OVERSAMPLE * size`` (1 for an image already near or below it); see
    :func:`lutkern.imageio.draft_scale` for why it must divide them."""
    factor = 1
    while width % (2 * factor) == 0 and height % (2 * factor) == 0 \
            and min(width, height) // (2 * factor) >= OVERSAMPLE * size:
        factor *= 2
    return factor


def _quantise(pixels: torch.Tensor, dtype: np.dtype) -> SizedImage:
    """Float values in [0, 1] -> codes of ``dtype``, rounded to the nearest (full_size left to fill)."""
    scale = SCALES[np.dtype(dtype)]
    codes = pixels.clamp(0, 1).mul_(scale).round_()
    codes = codes.to(torch.uint8 if dtype == np.uint8 else torch.int32).numpy().astype(dtype, copy=False)
    return SizedImage(codes, scale, (0, 0))


def decode_at_size(path: str | Path, size: int) -> SizedImage:
    """Decode ``path`` to ``size x size`` codes (see the module docstring). Raises what the readers raise
    (:class:`lutkern.imageio.ImageReadError`, naming the file)."""
    if is_float_image(path):  # EXR: values as stored, unclamped; decoded whole
        pixels = read_float_image(path).pixels
        return SizedImage(np.ascontiguousarray(resize(pixels, size).numpy()), 1.0,
                          (pixels.shape[2], pixels.shape[1]))
    decoded = decode_image(path, at_least=OVERSAMPLE * size)
    codes = decoded.codes  # (h,w,3), maybe already reduced by the JPEG decoder
    h, w, _ = codes.shape
    top = float((1 << decoded.bit_depth) - 1)
    if (h, w) == (size, size):  # at the training size already: the file's own codes, exactly
        return SizedImage(np.ascontiguousarray(codes.transpose(2, 0, 1)), top, decoded.full_size)
    factor = reduce_factor(w, h, size)
    if decoded.bit_depth == 8 and factor > 1:
        codes = np.array(Image.fromarray(codes, "RGB").reduce(factor))
    pixels = torch.from_numpy(codes).permute(2, 0, 1).to(torch.float32).div_(top)
    if decoded.bit_depth != 8 and factor > 1:
        pixels = F.avg_pool2d(pixels, factor)  # the box filter of Image.reduce
    sized = _quantise(resize(pixels.contiguous(), size), np.uint8 if decoded.bit_depth == 8 else np.uint16)
    sized.full_size = decoded.full_size
    return sized
