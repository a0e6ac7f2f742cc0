"""Built-in looks: smooth colour grades defined as functions of RGB, sampled into LUTs of any size.

Each look is a function ``look(size=33, *, dtype=torch.float32, device=None)`` returning a LUT
``(D,D,D,3)`` in the project convention (``lut[b, g, r, c]``, red fastest; lattice point ``(r,g,b)`` at
colour ``(r,g,b)/(D-1)``). Every look is a composition of monotone tone curves and convex mixes of colours
in [0,1], so its values lie in [0, 1] and it is smooth (infinitely differentiable) in the input colour.
Looks are evaluated in float64 and cast, so sizes nest exactly: ``look(2*D-1)[::2, ::2, ::2] == look(D)``.

``LOOKS`` (exported as ``lutkern.looks``) is a read-only mapping ``name -> look``.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import torch

from .conventions import LOOK_NAMES
from .functional import identity_lut

# Panchromatic black-and-white film: sensitive across the spectrum, a little more to red and less to
# blue than the eye's Rec.709 luma (0.2126, 0.7152, 0.0722), which darkens skies and lightens skin.
PANCHROMATIC_WEIGHTS = (0.30, 0.60, 0.10)
# Luma used to place a colour in shadows/highlights for the colour looks (Rec.709).
_REC709 = (0.2126, 0.7152, 0.0722)


def _luma(rgb: torch.Tensor, weights: tuple[float, float, float]) -> torch.Tensor:
    """``(...,3) -> (...,1)`` weighted sum of the channels."""
    w = torch.tensor(weights, dtype=rgb.dtype, device=rgb.device)
    return (rgb * w).sum(-1, keepdim=True)


def s_curve(x: torch.Tensor, contrast: float, pivot: float = 0.5, black: float = 0.0, white: float = 1.0):
    """A film-like S tone curve on [0, 1]: a logistic rescaled so that 0 -> ``black`` and 1 -> ``white``.

    Strictly increasing and smooth; ``contrast`` is the logistic slope (about 4: gentle, 8: hard),
    ``pivot`` the input where the curve is steepest, ``black``/``white`` the printed density limits.
    """
    lo = torch.sigmoid(torch.tensor(-contrast * pivot, dtype=x.dtype))
    hi = torch.sigmoid(torch.tensor(contrast * (1 - pivot), dtype=x.dtype))
    y = (torch.sigmoid(contrast * (x - pivot)) - lo) / (hi - lo)
    return black + (white - black) * y


def _mix(rgb: torch.Tensor, colour: tuple[float, float, float], weight: torch.Tensor | float) -> torch.Tensor:
    """Convex mix of ``rgb`` towards a fixed ``colour`` by ``weight`` in [0, 1] (stays inside [0,1]^3)."""
    c = torch.tensor(colour, dtype=rgb.dtype, device=rgb.device)
    return rgb + weight * (c - rgb)


def bw_film(rgb: torch.Tensor) -> torch.Tensor:
    """Black-and-white film: panchromatic channel mix, then an S curve with a slightly lifted black and a
    rolled-off white (print paper never reaches 0 or 1). Grey output, monotone in each input channel."""
    y = s_curve(_luma(rgb, PANCHROMATIC_WEIGHTS), contrast=5.0, pivot=0.45, black=0.02, white=0.98)
    return y.expand_as(rgb)


def teal_orange(rgb: torch.Tensor) -> torch.Tensor:
    """Blockbuster teal/orange: contrast, shadows pulled towards teal, highlights and skin towards orange."""
    x = s_curve(rgb, contrast=5.5, pivot=0.5)
    y = _luma(x, _REC709)
    # Warm colours (red above blue) get more orange; everything gets teal in proportion to darkness.
    warmth = torch.sigmoid(8.0 * (x[..., :1] - x[..., 2:]))
    x = _mix(x, (0.0, 0.42, 0.45), 0.35 * (1 - y) ** 2)
    return _mix(x, (1.0, 0.62, 0.32), 0.28 * y * warmth)


def faded_warm(rgb: torch.Tensor) -> torch.Tensor:
    """Faded warm film: lifted blacks, dimmed whites, muted saturation, a warm cast."""
    x = s_curve(rgb, contrast=3.5, pivot=0.45, black=0.10, white=0.93)
    x = x + 0.3 * (_luma(x, _REC709) - x)  # 30% of the way to grey: a convex mix, stays in [0, 1]
    return _mix(x, (1.0, 0.80, 0.55), 0.14)


def cool_contrast(rgb: torch.Tensor) -> torch.Tensor:
    """Cool high contrast: hard S curve per channel (which also saturates), blue-cyan shadows and mids."""
    x = s_curve(rgb, contrast=8.0, pivot=0.5, black=0.0, white=0.99)
    y = _luma(x, _REC709)
    return _mix(x, (0.25, 0.50, 0.85), 0.12 + 0.30 * (1 - y))


def _sampled(fn: Callable[[torch.Tensor], torch.Tensor], name: str):
    def look(size: int = 33, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        return fn(identity_lut(size, dtype=torch.float64)).to(dtype=dtype, device=device)

    look.__name__ = name
    look.__qualname__ = name
    look.__doc__ = f"The ``{name}`` look as a LUT ``(D,D,D,3)`` with ``D = size``. {fn.__doc__}"
    look.colour_fn = fn  # the continuous look ``(...,3) -> (...,3)``, for tests and exact rendering
    return look


LOOKS = types.MappingProxyType(
    {
        name: _sampled(fn, name)
        for name, fn in zip(LOOK_NAMES, (bw_film, teal_orange, faded_warm, cool_contrast), strict=True)
    }
)
