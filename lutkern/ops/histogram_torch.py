"""Per-channel histograms in plain torch ops (the fallback of :func:`lutkern.channel_histogram`)."""

from __future__ import annotations

import torch

# Pixels per chunk: bounds the int64 index buffer (8 bytes a pixel) on 24 MP images.
_CHUNK = 1 << 22


def channel_histogram_torch(images: torch.Tensor, bins: int) -> torch.Tensor:
    """``(B,C,bins)`` int64 counts of ``images`` ``(B,C,H,W)`` (checked by the caller): float values are
    clamped to [0,1] and counted at ``round(v * (bins - 1))``, NaN skipped; integer codes count as they
    are."""
    b, c = images.shape[:2]
    flat = images.reshape(b * c, -1)
    counts = torch.zeros(b * c, bins, dtype=torch.int64, device=images.device)
    offsets = torch.arange(b * c, device=images.device).view(-1, 1) * bins
    for start in range(0, flat.shape[1], _CHUNK):
        part = flat[:, start:start + _CHUNK]
        if part.is_floating_point():
            values = part.float() if part.dtype != torch.float64 else part
            keep = ~values.isnan()
            idx = torch.round(values.clamp(0, 1) * (bins - 1)).long()
            idx = (idx + offsets)[keep]
        else:
            idx = (part.long() + offsets).reshape(-1)
        counts.view(-1).add_(torch.bincount(idx, minlength=b * c * bins))
    return counts.view(b, c, bins)
