"""Quality measures: image PSNR/SSIM and the distance between a learned LUT and the true one."""

from __future__ import annotations

import math

import torch
from pytorch_msssim import ssim


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for images in [0,1]: ``10 log10(1 / mse)`` (inf for a perfect match)."""
    return math.inf if mse <= 0 else 10 * math.log10(1 / mse)


def ssim_value(output: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM of ``(B,3,H,W)`` images in [0,1] (``data_range=1``)."""
    return float(ssim(output.float(), target.float(), data_range=1.0, size_average=True))


def covered_lattice_points(images: torch.Tensor, lut_size: int) -> torch.Tensor:
    """Bool ``(D,D,D)`` mask ``[b, g, r]``: the lattice points nearest to at least one pixel of ``images``.

    images: ``(N,3,H,W)`` in [0,1] (values outside are clamped). Cells far from every pixel get no
    gradient from the images; only the regularizers shape them.
    """
    d = lut_size
    idx = (images.clamp(0, 1) * (d - 1)).round().long()  # (N,3,H,W): r, g, b lattice indices
    flat = (idx[:, 2] * d + idx[:, 1]) * d + idx[:, 0]
    mask = torch.zeros(d**3, dtype=torch.bool)
    mask[flat.flatten().unique()] = True
    return mask.view(d, d, d)


def lut_rmse(lut: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """RMS difference of two ``(D,D,D,3)`` LUTs, over the lattice points where ``mask`` ``(D,D,D)`` is set."""
    if lut.shape != truth.shape:
        raise ValueError(f"LUT shapes differ: {tuple(lut.shape)} vs {tuple(truth.shape)}")
    diff = (lut.float() - truth.float()).square()
    if mask is not None:
        diff = diff[mask]
    return math.sqrt(float(diff.mean()))
