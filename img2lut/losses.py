"""The training objective: image reconstruction (MSE, optional SSIM) plus optional LUT regularizers.

``output``/``target`` are ``(B,3,H,W)`` in [0,1]; ``lut`` is ``(B,D,D,D,3)`` (one predicted LUT per
image). Regularizers come from lutkern and are skipped when their weight is 0, so the seed's plain-MSE
objective costs nothing extra.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim

import lutkern


@dataclass(frozen=True)
class LossWeights:
    """The weight of each term (0: not computed) and the backend of the regularizers (None: automatic)."""

    ssim: float = 0.0
    smooth: float = 0.0
    tv: float = 0.0
    mono: float = 0.0
    backend: str | None = None


def ssim_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM`` with ``data_range=1`` (the images are in [0,1]; the seed passed 255)."""
    return 1 - ssim(output, target, data_range=1.0, size_average=True)


def total_loss(output: torch.Tensor, target: torch.Tensor, lut: torch.Tensor,
               weights: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """Return ``(loss, parts)``: the weighted sum and each term's unweighted value (for logging)."""
    mse = F.mse_loss(output, target)
    loss = mse
    parts = {"mse": float(mse.detach())}
    terms = (
        ("ssim", weights.ssim, lambda: ssim_loss(output, target)),
        ("smooth", weights.smooth, lambda: lutkern.smoothness(lut, backend=weights.backend)),
        ("tv", weights.tv, lambda: lutkern.total_variation(lut, backend=weights.backend)),
        ("mono", weights.mono, lambda: lutkern.monotonicity(lut, backend=weights.backend)),
    )
    for name, weight, term in terms:
        if weight:
            value = term()
            loss = loss + weight * value
            parts[name] = float(value.detach())
    return loss, parts
