"""Quality measures: image PSNR/SSIM, which lattice points the data covers, and the distance between a
learned LUT and the true one."""

from __future__ import annotations

import math

import torch
from pytorch_msssim import ssim

import lutkern

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
    coverage everywhere the project reports it.
    """
    if isinstance(pixels, torch.Tensor):
        pixels = [pixels.transpose(0, 1).reshape(3, -1) if pixels.dim() == 4 else pixels]
    elif hasattr(pixels, "batches"):
        pixels = (batch.transpose(0, 1).reshape(3, -1) for batch in pixels.batches())
    probe = None
    with torch.enable_grad():
        for flat in pixels:
            if probe is None:
                probe = torch.zeros(lut_size, lut_size, lut_size, 3, device=flat.device, requires_grad=True)
            for chunk in flat.split(_CHUNK_PIXELS, dim=1):
                out = lutkern.apply_lut(chunk.unsqueeze(1), probe, interpolation=interpolation,
                                        backend=backend)
                out[0].sum().backward()
    if probe is None or probe.grad is None:
        return torch.zeros(lut_size, lut_size, lut_size)
    return probe.grad[..., 0].detach()


def lut_rmse(lut: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """RMS difference of two ``(D,D,D,3)`` LUTs, over the lattice points where ``mask`` ``(D,D,D)`` is set."""
    if lut.shape != truth.shape:
        raise ValueError(f"LUT shapes differ: {tuple(lut.shape)} vs {tuple(truth.shape)}")
    diff = (lut.float() - truth.float()).square()
    if mask is not None:
        diff = diff[mask]
    return math.sqrt(float(diff.mean()))
