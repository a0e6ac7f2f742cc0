"""Plain-torch LUT application: the oracle every faster implementation is tested against.

Conventions (shared by the whole project): ``image`` is ``(B,3,H,W)`` RGB; ``lut`` is ``(B,D,D,D,3)``
or ``(1,D,D,D,3)`` indexed ``lut[n, b, g, r, c]`` (red index varies fastest in memory, the ``.cube`` row
order). Lattice point ``(r, g, b)`` sits at colour ``(r, g, b) / (D - 1)``. Inputs are clamped to
[0, 1] (the LUT edge is extended); a NaN channel makes the whole output pixel NaN.
Computation runs in float32 (float64 when the image or the LUT is float64) whatever the input dtypes.
Gradients come from autograd, so this module is slow but obviously right.
"""

from __future__ import annotations

import torch

from ..functional import INTERPOLATIONS


def _gather(
    lut_flat: torch.Tensor, r: torch.Tensor, g: torch.Tensor, b: torch.Tensor, d: int
) -> torch.Tensor:
    """Values ``lut[n, b, g, r, :]`` as ``(N,3,H*W)`` for integer index maps of shape ``(N,H*W)``."""
    idx = (b * d + g) * d + r
    return torch.gather(lut_flat, 2, idx.unsqueeze(1).expand(-1, 3, -1))


def apply_lut_reference(
    image: torch.Tensor, lut: torch.Tensor, interpolation: str = "trilinear"
) -> torch.Tensor:
    """Apply ``lut`` ``(N|1,D,D,D,3)`` to ``image`` ``(N,3,H,W)``; returns ``(N,3,H,W)`` in image's dtype."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    dtype = torch.promote_types(torch.promote_types(image.dtype, lut.dtype), torch.float32)
    out_dtype, image, lut = image.dtype, image.to(dtype), lut.to(dtype)
    n, _, h, w = image.shape
    d = lut.shape[1]
    lut_flat = lut.reshape(lut.shape[0], d * d * d, 3).transpose(1, 2).expand(n, 3, d * d * d)
    x = image.reshape(n, 3, h * w)
    nan = torch.isnan(x).any(dim=1, keepdim=True)
    x = torch.where(nan, torch.zeros_like(x), x).clamp(0, 1) * (d - 1)
    if interpolation == "nearest":
        i = torch.round(x.detach()).long()
        out = _gather(lut_flat, i[:, 0], i[:, 1], i[:, 2], d)
    else:
        # Cell origin; the last cell is used for x == D-1 so that its one-sided slope applies there.
        i0 = x.detach().floor().clamp(max=d - 2).long()
        f = x - i0
        r0, g0, b0 = i0[:, 0], i0[:, 1], i0[:, 2]
        fr, fg, fb = f[:, 0:1], f[:, 1:2], f[:, 2:3]

        def c(dr: int, dg: int, db: int) -> torch.Tensor:
            return _gather(lut_flat, r0 + dr, g0 + dg, b0 + db, d)

        if interpolation == "trilinear":
            out = 0
            for dr in (0, 1):
                for dg in (0, 1):
                    for db in (0, 1):
                        wr = fr if dr else 1 - fr
                        wg = fg if dg else 1 - fg
                        wb = fb if db else 1 - fb
                        out = out + wr * wg * wb * c(dr, dg, db)
        else:
            out = _tetrahedral(fr, fg, fb, c)
    out = torch.where(nan, torch.full_like(out, float("nan")), out)
    return out.reshape(n, 3, h, w).to(out_dtype)


def _tetrahedral(fr, fg, fb, c) -> torch.Tensor:
    """Tetrahedral interpolation in one cell: the six tetrahedra split by the order of (fr, fg, fb)."""
    c000, c111 = c(0, 0, 0), c(1, 1, 1)
    c100, c010, c001 = c(1, 0, 0), c(0, 1, 0), c(0, 0, 1)
    c110, c101, c011 = c(1, 1, 0), c(1, 0, 1), c(0, 1, 1)
    cases = [
        # (condition, corner after the largest step, corner after the two largest, w1, w2, w3)
        ((fr >= fg) & (fg >= fb), c100, c110, fr, fg, fb),
        ((fr >= fb) & (fb > fg), c100, c101, fr, fb, fg),
        ((fb > fr) & (fr >= fg), c001, c101, fb, fr, fg),
        ((fg > fr) & (fr >= fb), c010, c110, fg, fr, fb),
        ((fg >= fb) & (fb > fr), c010, c011, fg, fb, fr),
        ((fb > fg) & (fg > fr), c001, c011, fb, fg, fr),
    ]
    out = torch.zeros_like(c000)
    for cond, ca, cb, f1, f2, f3 in cases:
        val = (1 - f1) * c000 + (f1 - f2) * ca + (f2 - f3) * cb + f3 * c111
        out = torch.where(cond, val, out)
    return out
