"""Grade rules with a known LUT per image: the image-adaptive demo sets and the generalisation bench.

Each *family* reads one statistic of the input photo and grades it with it, the way automatic first
passes do: a per-channel levels curve ``clamp((x - lo) / (hi - lo), 0, 1) ** gamma`` whose parameters
come from the photo, then a built-in look blended in with a strength that may also come from it.

- ``grey_world`` (channel means): a gain takes each channel's mean to 0.45 (bounded to [1/2.5, 2.5]),
  then ``teal_orange`` at a strength that falls as the mean luma rises;
- ``levels`` (tail percentiles): each channel's 0.5 / 99.5 percentiles to 0 / 1, then ``teal_orange``;
- ``auto_gamma`` (channel means): the gamma that takes each channel's mean to 0.5, then ``faded_warm``;
- ``extremes`` (minimum and maximum): each channel's min / max to 0 / 1, clipping, then ``cool_contrast``;
- ``saturation`` (mean saturation): ``teal_orange`` the stronger, the less saturated the photo;
- ``auto_tone`` (1 / 50 / 99 percentiles): levels at 1 / 99, then the gamma that takes the levelled
  median to 0.5, then ``cool_contrast`` at 0.7;
- ``levels_gamma`` (0.3 / 99.7 percentiles and the mean): levels at 0.3 / 99.7, then the gamma that
  takes the levelled mean to 0.45, then ``faded_warm`` at 0.8. Its percentiles lie between those of
  the statistics the head reads and of the corrections :mod:`img2lut.diagnosis` tries: a rule off
  their grid, read off the pixels themselves.

The inputs are photos *mis-shot* first (:func:`mis_shoot`): a random exposure and white-balance error in
(approximately) linear light and a lifted black level (haze), quantised to 8 bits. Every grade is a
function of the colour alone once the input's statistics are known, so each pair has an exact LUT
(:func:`grade_lut`) while no single LUT fits all pairs. Statistics are read from the 8-bit input with
:func:`img2lut.image_stats.image_stats` (quantiles from full-resolution histograms).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import torch

import lutkern

from .image_stats import channel_mean, gamma_to_mid, image_stats, levels_curve, quantile, saturation_mean

FAMILIES = ("grey_world", "levels", "auto_gamma", "extremes", "saturation", "auto_tone", "levels_gamma")
GREY = 0.45
MAX_GAIN = 2.5
# Mis-shooting, drawn uniformly: exposure in stops, white balance as log2 gains of red and blue, haze as
# the level black is lifted to.
EXPOSURE_STOPS = (-1.0, 0.6)
WB_LOG2_GAIN = (-0.35, 0.35)
HAZE = (0.0, 0.12)
_GAMMA = 2.2
_REC709 = (0.2126, 0.7152, 0.0722)


@dataclass(frozen=True)
class Grade:
    """One image's grade: per-channel levels ``lo``, ``hi``, ``gamma`` (r, g, b), then ``look`` at
    ``strength`` (0: none, 1: the whole look)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    gamma: tuple[float, float, float]
    look: str
    strength: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Grade:
        return cls(tuple(d["lo"]), tuple(d["hi"]), tuple(d["gamma"]), str(d["look"]), float(d["strength"]))


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=gen))


def mis_shoot(photo: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``photo`` ``(3,H,W)`` with a random exposure, white-balance and haze error, quantised to 8 bits."""
    stops = _uniform(gen, *EXPOSURE_STOPS)
    red, blue = 2 ** _uniform(gen, *WB_LOG2_GAIN), 2 ** _uniform(gen, *WB_LOG2_GAIN)
    wb = torch.tensor([red, 1.0, blue]).view(3, 1, 1)
    haze = _uniform(gen, *HAZE)
    linear = photo.clamp(0, 1) ** _GAMMA * (2**stops) * wb
    shot = haze + (1 - haze) * linear.clamp(0, 1) ** (1 / _GAMMA)
    return (shot * 255).round() / 255


def _pixel_quantile(image: torch.Tensor, q: float) -> torch.Tensor:
    """``(3,)`` each channel's quantile ``q`` of ``image`` ``(3,H,W)``, inverted CDF (the smallest value at
    or below which a fraction ``q`` of the pixels lies)."""
    values = image.reshape(3, -1).double().sort(-1).values
    k = max(math.ceil(q * values.shape[-1]) - 1, 0)
    return values[:, k]


def _triple(t: torch.Tensor) -> tuple[float, float, float]:
    return tuple(float(v) for v in t.double())


def grade_of(image: torch.Tensor, family: str) -> Grade:
    """The grade ``family`` gives the input ``image`` ``(3,H,W)`` in [0,1]."""
    if family not in FAMILIES:
        raise ValueError(f"unknown grade family {family!r}; known: {', '.join(FAMILIES)}")
    stats = image_stats(image.unsqueeze(0))
    mean = channel_mean(stats)[0]
    zeros, ones = _triple(torch.zeros(3)), _triple(torch.ones(3))
    if family == "grey_world":
        gain = (GREY / mean.double().clamp(min=1e-6)).clamp(1 / MAX_GAIN, MAX_GAIN)
        luma = float((torch.tensor(_REC709, dtype=torch.float64) * mean.double()).sum())
        return Grade(zeros, _triple(1 / gain), ones, "teal_orange", min(max(1.1 - 1.4 * luma, 0.2), 1.0))
    if family == "levels":
        return Grade(_triple(quantile(stats, 0.005)[0]), _triple(quantile(stats, 0.995)[0]), ones,
                     "teal_orange", 1.0)
    if family == "auto_gamma":
        return Grade(zeros, ones, _triple(gamma_to_mid(mean.double())), "faded_warm", 1.0)
    if family == "extremes":
        return Grade(_triple(quantile(stats, 0.0)[0]), _triple(quantile(stats, 1.0)[0]), ones,
                     "cool_contrast", 1.0)
    if family == "saturation":
        strength = min(max(1.2 - 4.0 * float(saturation_mean(stats)[0]), 0.0), 1.0)
        return Grade(zeros, ones, ones, "teal_orange", strength)
    if family == "levels_gamma":
        lo, hi = _pixel_quantile(image, 0.003), _pixel_quantile(image, 0.997)
        levelled = (mean.double() - lo) / (hi - lo).clamp(min=1 / 64)
        return Grade(_triple(lo), _triple(hi), _triple(gamma_to_mid(levelled, 0.45)), "faded_warm", 0.8)
    lo, hi = quantile(stats, 0.01)[0].double(), quantile(stats, 0.99)[0].double()
    median = quantile(stats, 0.5)[0].double()
    levelled = ((median - lo) / (hi - lo).clamp(min=1 / 64)).clamp(0, 1)
    return Grade(_triple(lo), _triple(hi), _triple(gamma_to_mid(levelled)), "cool_contrast", 0.7)


@functools.cache
def _look(name: str, size: int) -> torch.Tensor:
    return lutkern.looks[name](size=size, dtype=torch.float64)


def grade_lut(grade: Grade, size: int = 33) -> torch.Tensor:
    """The exact LUT ``(D,D,D,3)`` of ``grade`` (float32, ``lut[b, g, r, c]``)."""
    lattice = lutkern.identity_lut(size, dtype=torch.float64).reshape(1, -1, 3).permute(0, 2, 1)  # (1,3,P)
    params = [torch.tensor(p, dtype=torch.float64).view(1, 3) for p in (grade.lo, grade.hi, grade.gamma)]
    levelled = levels_curve(lattice, *params)
    look = _look(grade.look, 2 * size - 1)
    looked = lutkern.apply_lut(levelled.unsqueeze(2), look, backend="torch")[:, :, 0]
    out = (1 - grade.strength) * levelled + grade.strength * looked
    return out[0].T.reshape(size, size, size, 3).float()
