"""Oracle for :func:`lutkern.channel_histogram`: one pixel at a time, in Python floats."""

from __future__ import annotations

import math

import torch


def channel_histogram_reference(images: torch.Tensor, bins: int) -> torch.Tensor:
    """``(B,C,bins)`` int64 counts of ``images`` ``(B,C,H,W)``. A float value is clamped to [0, 1] and
    scaled by ``bins - 1`` in float32 (float64 for float64 images), then rounded half to even by Python's
    ``round``; NaN is not counted. Integer codes count as they are."""
    b, c = images.shape[:2]
    out = torch.zeros(b, c, bins, dtype=torch.int64)
    values = images.reshape(b, c, -1)
    if images.is_floating_point():
        values = values.float() if values.dtype != torch.float64 else values
        values = values.clamp(0, 1) * (bins - 1)  # NaN stays NaN
    for i in range(b):
        for ch in range(c):
            for v in values[i, ch].tolist():
                if isinstance(v, float):
                    if math.isnan(v):
                        continue
                    v = round(v)
                out[i, ch, v] += 1
    return out
