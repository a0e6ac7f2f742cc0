"""Quality measures: image PSNR/SSIM, which lattice points the data covers, and the distance between a
learned LUT and the true one."""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ssim

import lutkern

from .codes import BATCH, Codes

# Interpolation weight (in pixels) a lattice point needs to count as covered by the data.
COVERED_WEIGHT = 1.0
# Pixels per apply_lut call when measuring coverage: bounds peak memory.
_CHUNK_PIXELS = 1 << 20


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for images in [0,1]: ``10 log10(1 / mse)`` (inf for a perfect match)."""
    return math.inf if mse <= 0 else 10 * math.log10(1 / mse)


def ssim_value(output: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM of ``(B,3,H,W)`` images in [0,1] (``data_range=1``)."""
    return float(ssim(output.float(), target.float(), data_range=1.0, size_average=True))


def image_ssim(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM ``(B,)`` of each of ``(B,3,H,W)`` images in [0,1] (``data_range=1``; the mean of its channels)."""
    return ssim(output.float(), target.float(), data_range=1.0, size_average=False).float()


def lattice_coverage(pixels, lut_size: int, interpolation: str = "trilinear",
                     backend: str | None = None) -> torch.Tensor:
    """Interpolation weight ``(D,D,D)`` ``[b, g, r]`` each lattice point receives from ``pixels``: ``(3,P)``
    colours, images ``(N,3,H,W)``, images held as codes (:class:`img2lut.codes.Codes`, read a batch at
    a time), or an iterable of ``(3,P)`` chunks (values outside [0,1] count at the LUT's edge).

    Taken from apply_lut's own gradient (d sum(out) / d lut), so it matches the interpolation exactly: a
    point with weight 0 gets no gradient from these pixels, only from the regularizers. A point is
    *covered* when its weight is at least :data:`COVERED_WEIGHT` (one pixel's worth), the one meaning of
    coverage everywhere the project reports it. Of 8-bit codes, the colours are counted first and each
    colour that occurs goes through apply_lut once, weighted by its count: the same sum, without a pass
    over every pixel.
    """
    counts = _colour_counts(pixels)
    if counts is not None:  # (3,P) colours, each with its count
        colours = counts.nonzero().squeeze(1)
        rgb = torch.stack([colours % 256, colours // 256 % 256, colours // 65536]).float() / 255
        chunks = [(rgb, counts[colours].float())]
    elif isinstance(pixels, torch.Tensor):
        chunks = [(pixels.transpose(0, 1).reshape(3, -1) if pixels.dim() == 4 else pixels, None)]
    elif hasattr(pixels, "batches"):
        chunks = ((batch.transpose(0, 1).reshape(3, -1), None) for batch in pixels.batches())
    else:
        chunks = ((flat, None) for flat in pixels)
    probe = None
    with torch.enable_grad():
        for flat, weight in chunks:
            if probe is None:
                probe = torch.zeros(lut_size, lut_size, lut_size, 3, device=flat.device, requires_grad=True)
            for start in range(0, flat.shape[1], _CHUNK_PIXELS):
                part = slice(start, start + _CHUNK_PIXELS)
                out = lutkern.apply_lut(flat[:, None, part], probe, interpolation=interpolation,
                                        backend=backend)[0, 0]
                (out if weight is None else out * weight[part].to(out)).sum().backward()
    if probe is None or probe.grad is None:
        return torch.zeros(lut_size, lut_size, lut_size)
    return probe.grad[..., 0].detach()


def _colour_counts(pixels) -> torch.Tensor | None:
    """``(256**3,)`` int64: how many pixels of 8-bit codes ``pixels`` have each colour, numbered
    ``r + 256 g + 65536 b``; None for anything else (other codes, codes read through a correction,
    float tensors)."""
    plain = type(pixels) is Codes and pixels.dtype == np.uint8
    if not plain or not np.all(pixels.scales[pixels.index] == 255):
        return None
    counts = np.zeros(1 << 24, dtype=np.int64)
    for start in range(0, len(pixels), BATCH):
        codes = pixels.array[pixels.index[start:start + BATCH]].astype(np.int32)  # (B,3,H,W)
        counts += np.bincount((codes[:, 0] | codes[:, 1] << 8 | codes[:, 2] << 16).ravel(), minlength=1 << 24)
    return torch.from_numpy(counts)


def lut_rmse(lut: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """RMS difference of two ``(D,D,D,3)`` LUTs, over the lattice points where ``mask`` ``(D,D,D)`` is set."""
    if lut.shape != truth.shape:
        raise ValueError(f"LUT shapes differ: {tuple(lut.shape)} vs {tuple(truth.shape)}")
    diff = (lut.float() - truth.float()).square()
    if mask is not None:
        diff = diff[mask]
    return math.sqrt(float(diff.mean()))
