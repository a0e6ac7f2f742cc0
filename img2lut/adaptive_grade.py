"""An image-adaptive grade with a known LUT per image: what the ``adaptive`` demo set is made of.

A photo (sRGB in [0,1]) is first *mis-shot*: a random exposure error and white-balance error are
applied in (approximately) linear light, then it is quantised to 8 bits. That is the input. Its target
is what an automatic first pass (auto exposure and white balance, then a look) does to it, decided by
the input alone:

1. **grey world**: each channel is scaled so that its mean becomes mid grey (0.45), the gain bounded
   to [1/2.5, 2.5] and the result clipped at 1 (this undoes the exposure and the white balance as far
   as the photo's averages show them);
2. **a look whose strength follows the scene**: the built-in ``teal_orange`` look blended in with a
   strength that grows as the photo gets darker (``strength = clamp(1.1 - 1.4 mean luma, 0.2, 1)``,
   the luma of the input).

Both steps are functions of the colour only, once the input's channel means are known, so each pair
has an exact per-image LUT (:func:`grade_lut`), while no single LUT fits all pairs. The means survive
any thumbnail (an antialiased resize keeps them), so a CNN can read the grade off what it sees; it has
to, which is what image-adaptive LUTs exist for.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import torch

import lutkern

LOOK = "teal_orange"
GREY = 0.45
MAX_GAIN = 2.5
# Mis-shooting, drawn uniformly: exposure in stops, white balance as log2 gains of red and blue.
EXPOSURE_STOPS = (-1.0, 0.6)
WB_LOG2_GAIN = (-0.35, 0.35)
_GAMMA = 2.2
_REC709 = (0.2126, 0.7152, 0.0722)


@dataclass(frozen=True)
class Grade:
    """One image's grade: the ``gain`` of each channel (r, g, b) and the look's ``strength``."""

    gain: tuple[float, float, float]
    strength: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Grade:
        return cls(tuple(d["gain"]), float(d["strength"]))


def mis_shoot(photo: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``photo`` ``(3,H,W)`` with a random exposure and white-balance error, quantised to 8 bits."""
    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand(1, generator=gen))

    stops = uniform(*EXPOSURE_STOPS)
    wb = torch.tensor([2 ** uniform(*WB_LOG2_GAIN), 1.0, 2 ** uniform(*WB_LOG2_GAIN)]).view(3, 1, 1)
    linear = photo.clamp(0, 1) ** _GAMMA * (2**stops) * wb
    return (linear.clamp(0, 1) ** (1 / _GAMMA) * 255).round() / 255


def grade_of(image: torch.Tensor) -> Grade:
    """The grade a pair gets, read off its input ``image`` ``(3,H,W)`` in [0,1]."""
    means = image.reshape(3, -1).double().mean(1)
    gain = (GREY / means.clamp(min=1e-6)).clamp(1 / MAX_GAIN, MAX_GAIN)
    luma = float((torch.tensor(_REC709, dtype=torch.float64) * means).sum())
    strength = min(max(1.1 - 1.4 * luma, 0.2), 1.0)
    return Grade(tuple(gain.tolist()), strength)


@functools.cache
def _look(size: int) -> torch.Tensor:
    return lutkern.looks[LOOK](size=size, dtype=torch.float64)


def grade_lut(grade: Grade, size: int = 33) -> torch.Tensor:
    """The exact LUT ``(D,D,D,3)`` of ``grade`` (float32, ``lut[b, g, r, c]``)."""
    lattice = lutkern.identity_lut(size, dtype=torch.float64)
    levelled = (lattice * torch.tensor(grade.gain, dtype=torch.float64)).clamp(0, 1)
    look = _look(2 * size - 1)
    looked = lutkern.apply_lut(levelled.reshape(1, -1, 3).permute(2, 0, 1), look, backend="torch")
    looked = looked.permute(1, 2, 0).reshape(levelled.shape)
    return ((1 - grade.strength) * levelled + grade.strength * looked).float()
