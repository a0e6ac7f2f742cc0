"""Colour science in torch: sRGB -> linear RGB -> CIE XYZ (D65) -> CIELAB, and the CIEDE2000 difference.

Formulas:
- sRGB decoding, IEC 61966-2-1: ``c / 12.92`` up to 0.04045, else ``((c + 0.055) / 1.055) ** 2.4``.
- linear sRGB -> XYZ: the matrix of IEC 61966-2-1 (Y of white = 1); CIELAB is relative to D65 (xy 0.3127,
  0.3290), so sRGB white is L* = 100 with |a*|, |b*| < 0.01 (the published matrix has 4 decimals).
- XYZ -> CIELAB, CIE 15: ``f(t) = t^(1/3)`` above ``(6/29)^3``, else ``t / (3 (6/29)^2) + 4/29``.
- CIEDE2000: CIE 142-2001 as written in Sharma, Wu and Dalal, "The CIEDE2000 color-difference formula:
  implementation notes, supplementary test data, and mathematical observations", Color Research and
  Application 30(1), 2005, including their conventions for neutral colours and the mean hue.

Every function takes the colour channels on one dimension (``dim``, default -3 as in ``(B,3,H,W)``
images) and broadcasts over the others. Computation is in float32, or float64 for float64 inputs.
"""

from __future__ import annotations

import torch

# IEC 61966-2-1 (sRGB), the normative linear sRGB -> XYZ matrix, 4 decimals as published (colour-science
# uses the same). Its rows sum to the D65 white within 5e-5.
SRGB_TO_XYZ = torch.tensor([[0.4124, 0.3576, 0.1805],
                            [0.2126, 0.7152, 0.0722],
                            [0.0193, 0.1192, 0.9505]], dtype=torch.float64)
D65_XY = (0.3127, 0.3290)  # CIE 1931 2-degree observer
D65_WHITE_XYZ = torch.tensor([D65_XY[0] / D65_XY[1], 1.0, (1 - sum(D65_XY)) / D65_XY[1]], dtype=torch.float64)
_LAB_EPSILON = (6 / 29) ** 3
# 25^7, the constant of the chroma terms G and R_C.
_25_POW_7 = 25.0**7


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _check(x: torch.Tensor, dim: int, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0 or x.shape[dim] != 3:
        raise ValueError(f"{name} must have 3 channels on dim {dim}, got shape {tuple(x.shape)}")


def _matmul_channels(m: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    """Apply the ``(3,3)`` matrix ``m`` to the 3-vectors along ``dim`` of ``x``."""
    moved = x.movedim(dim, -1)
    return (moved @ m.to(x.dtype).T).movedim(-1, dim)


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """Decode sRGB-encoded values (any shape, nominally [0,1]) to linear light (IEC 61966-2-1)."""
    x = rgb.to(_work_dtype(rgb))
    # clamp(min=0) only guards pow against negatives in the branch torch.where discards.
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0) + 0.055) / 1.055) ** 2.4)


def srgb_to_xyz(rgb: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """sRGB in [0,1] -> CIE XYZ (D65, white Y = 1); channels on ``dim``."""
    _check(rgb, dim, "rgb")
    return _matmul_channels(SRGB_TO_XYZ, srgb_to_linear(rgb), dim)


def xyz_to_lab(xyz: torch.Tensor, dim: int = -3, white: torch.Tensor = D65_WHITE_XYZ) -> torch.Tensor:
    """CIE XYZ -> CIELAB (L* in [0,100]) relative to ``white`` (XYZ, default D65); channels on ``dim``."""
    _check(xyz, dim, "xyz")
    x = xyz.to(_work_dtype(xyz))
    shape = [1] * x.dim()
    shape[dim] = 3
    t = x / white.to(x.dtype).view(shape)
    f = torch.where(t > _LAB_EPSILON, t.clamp(min=_LAB_EPSILON) ** (1 / 3), t / (3 * (6 / 29) ** 2) + 4 / 29)
    fx, fy, fz = f.unbind(dim)
    return torch.stack((116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)), dim)


def srgb_to_lab(rgb: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """sRGB in [0,1] -> CIELAB (D65); channels on ``dim``, e.g. images ``(B,3,H,W)``."""
    return xyz_to_lab(srgb_to_xyz(rgb, dim), dim)


def _hue_degrees(b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Hue angle in [0, 360); 0 for a = b = 0 (Sharma et al., eq. 4)."""
    h = torch.rad2deg(torch.atan2(b, a)) % 360
    return torch.where((a == 0) & (b == 0), torch.zeros_like(h), h)


def delta_e_2000(lab1: torch.Tensor, lab2: torch.Tensor, dim: int = -3,
                 k_l: float = 1.0, k_c: float = 1.0, k_h: float = 1.0) -> torch.Tensor:
    """CIEDE2000 colour difference of two CIELAB tensors (channels L*, a*, b* on ``dim``).

    Returns the inputs' broadcast shape without ``dim``. ``k_l, k_c, k_h`` are the parametric factors
    (1 for the reference conditions). Hue differences of exactly 180 degrees are resolved as in Sharma et
    al. (``|h1 - h2| <= 180`` counts as the near side), within the rounding of the hue angles.
    Meant for evaluation: the gradient is undefined at neutral colours (a* = b* = 0).
    """
    _check(lab1, dim, "lab1")
    _check(lab2, dim, "lab2")
    dtype = torch.promote_types(_work_dtype(lab1), _work_dtype(lab2))
    l1, a1, b1 = lab1.to(dtype).unbind(dim)
    l2, a2, b2 = lab2.to(dtype).unbind(dim)

    c_mean = (torch.hypot(a1, b1) + torch.hypot(a2, b2)) / 2
    c7 = c_mean**7
    g = 0.5 * (1 - torch.sqrt(c7 / (c7 + _25_POW_7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p, h2p = _hue_degrees(b1, a1p), _hue_degrees(b2, a2p)

    # Hue angles come from atan2 and a modulo, so two hues exactly 180 degrees apart can differ by
    # 180 + a few ulps; the tolerance keeps such pairs on the paper's "<= 180" side.
    tol = 360 * 8 * torch.finfo(dtype).eps
    chroma_product = c1p * c2p
    neutral = chroma_product == 0
    dh = h2p - h1p
    far = dh.abs() > 180 + tol
    dh = torch.where(far, dh - 360 * torch.sign(dh), dh)
    dh = torch.where(neutral, torch.zeros_like(dh), dh)
    d_l = l2 - l1
    d_c = c2p - c1p
    d_h = 2 * torch.sqrt(chroma_product) * torch.sin(torch.deg2rad(dh / 2))

    l_mean = (l1 + l2) / 2
    cp_mean = (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_mean = torch.where(far, torch.where(h_sum < 360, h_sum + 360, h_sum - 360), h_sum) / 2
    h_mean = torch.where(neutral, h_sum, h_mean)

    def cos_deg(x: torch.Tensor) -> torch.Tensor:
        return torch.cos(torch.deg2rad(x))

    t = (1 - 0.17 * cos_deg(h_mean - 30) + 0.24 * cos_deg(2 * h_mean) + 0.32 * cos_deg(3 * h_mean + 6)
         - 0.20 * cos_deg(4 * h_mean - 63))
    d_theta = 30 * torch.exp(-(((h_mean - 275) / 25) ** 2))
    cp7 = cp_mean**7
    r_c = 2 * torch.sqrt(cp7 / (cp7 + _25_POW_7))
    l50 = (l_mean - 50) ** 2
    s_l = 1 + 0.015 * l50 / torch.sqrt(20 + l50)
    s_c = 1 + 0.045 * cp_mean
    s_h = 1 + 0.015 * cp_mean * t
    r_t = -torch.sin(torch.deg2rad(2 * d_theta)) * r_c

    tl, tc, th = d_l / (k_l * s_l), d_c / (k_c * s_c), d_h / (k_h * s_h)
    # The sum is >= 0 in exact arithmetic (|R_T| < 2); clamp rounding below 0 away.
    return torch.sqrt((tl**2 + tc**2 + th**2 + r_t * tc * th).clamp(min=0))


def delta_e_2000_srgb(rgb1: torch.Tensor, rgb2: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """CIEDE2000 between two sRGB images in [0,1] (e.g. ``(B,3,H,W)`` -> ``(B,H,W)``)."""
    return delta_e_2000(srgb_to_lab(rgb1, dim), srgb_to_lab(rgb2, dim), dim)


__all__ = ["D65_XY", "D65_WHITE_XYZ", "SRGB_TO_XYZ", "delta_e_2000", "delta_e_2000_srgb", "srgb_to_lab",
           "srgb_to_linear", "srgb_to_xyz", "xyz_to_lab"]
