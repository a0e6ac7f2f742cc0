"""What a grade is read from: per-image statistics taken at full code resolution from the full-size image.

Automatic grades read a photo's tails and extremes (levels, clipping points, auto-gamma), which a small
antialiased thumbnail washes out. :func:`image_stats` turns each image into a fixed vector of
:data:`STATS_DIM` numbers, computed in one pass from :func:`lutkern.channel_histogram` (256 bins for
float and 8-bit images, 65536 for 16-bit codes) plus a few joint colour statistics:

- per channel (r, g, b), the :data:`QUANTILES` of its values (0 = the minimum, 1 = the maximum), its mean
  and its standard deviation;
- joint: the mean and standard deviation of the saturation (max - min of a pixel's channels), the
  standard deviation of the luma, and the three correlations between channels.

Quantile ``q`` of a channel is the value of the first bin at which its cumulative count reaches
``max(q * N, 1)`` of its ``N`` pixels: the smallest code at or below which a fraction ``q`` lies.

The same vector feeds the CNN's head (next to its pooled features) and the per-channel *normalisers* of
:data:`NORMALISERS`: the automatic corrections of photo editors, each a per-channel levels curve
``clamp((x - lo) / (hi - lo), 0, 1) ** gamma`` read off the statistics (auto levels at several clipping
percentages or min / max, alone or followed by the gamma that takes the levelled mean or median to mid
grey; a grey-world gain), which training may put in front of the learned LUT when the pairs show that
the grade reads them (:mod:`img2lut.diagnosis` searches the whole space).
"""

from __future__ import annotations

import math

import numpy as np
import torch

import lutkern

QUANTILES = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995,
             0.999, 1.0)
JOINT = ("saturation mean", "saturation std", "luma std", "corr rg", "corr gb", "corr br")
STATS_DIM = 3 * (len(QUANTILES) + 2) + len(JOINT)
_REC709 = (0.2126, 0.7152, 0.0722)
# Pixels of an image the joint statistics read at most (an even subsample of a larger image).
JOINT_PIXELS = 1 << 20
# Bounds of a normaliser's gamma and of its levels range: a flat or black channel must not explode.
GAMMA_RANGE = (1 / 3, 3.0)
MIN_RANGE = 1 / 64
MAX_GAIN = 4.0  # of the grey-world correction, either way


def channel_quantiles(counts: torch.Tensor, levels) -> torch.Tensor:
    """``(B,3,Q)`` quantiles in [0,1] of histograms ``counts`` ``(B,3,H)`` at ``levels`` (Q fractions)."""
    counts = counts.double()
    cdf = counts.cumsum(-1)
    total = cdf[..., -1:]
    q = torch.as_tensor(levels, dtype=torch.float64)
    wanted = (q * total).clamp(min=1)  # (B,3,Q)
    index = torch.searchsorted(cdf.contiguous(), wanted.contiguous()).clamp(max=counts.shape[-1] - 1)
    return (index.double() / (counts.shape[-1] - 1)).float()


def _moments(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation ``(B,3)`` of each channel from its histogram ``(B,3,H)``."""
    counts = counts.double()
    values = torch.linspace(0, 1, counts.shape[-1], dtype=torch.float64)
    total = counts.sum(-1).clamp(min=1)
    mean = (counts * values).sum(-1) / total
    var = (counts * (values - mean.unsqueeze(-1)) ** 2).sum(-1) / total
    return mean.float(), var.clamp(min=0).sqrt().float()


def _joint(pixels: torch.Tensor) -> torch.Tensor:
    """``(B,len(JOINT))`` joint colour statistics of ``pixels`` ``(B,3,P)`` in [0,1]."""
    pixels = pixels.double().clamp(0, 1)
    sat = pixels.amax(1) - pixels.amin(1)
    luma = (torch.tensor(_REC709, dtype=torch.float64).view(1, 3, 1) * pixels).sum(1)
    centred = pixels - pixels.mean(-1, keepdim=True)
    std = centred.square().mean(-1).sqrt()
    corr = [(centred[:, i] * centred[:, j]).mean(-1) / (std[:, i] * std[:, j]).clamp(min=1e-6)
            for i, j in ((0, 1), (1, 2), (2, 0))]
    spread = [sat.mean(-1), sat.std(-1, correction=0), luma.std(-1, correction=0)]
    return torch.stack([*spread, *corr], 1).float()


def _assemble(counts: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
    mean, std = _moments(counts)
    quantiles = channel_quantiles(counts, QUANTILES)
    return torch.cat([quantiles.flatten(1), mean, std, joint], 1)


def image_stats(images: torch.Tensor) -> torch.Tensor:
    """``(B,STATS_DIM)`` float32 statistics of float images ``(B,3,H,W)`` (values clamped to [0,1]; on
    the CPU, whatever the images' device)."""
    if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"images must be float (B,3,H,W), got {images.dtype} {tuple(images.shape)}")
    counts = lutkern.channel_histogram(images.detach(), 256).cpu()
    flat = images.detach().flatten(2)
    step = max(1, math.ceil(flat.shape[-1] / JOINT_PIXELS))
    return _assemble(counts, _joint(flat[..., ::step].float().cpu()))


def codes_stats(codes: np.ndarray, bit_depth: int) -> torch.Tensor:
    """``(1,STATS_DIM)``: :func:`image_stats` of an image given as ``(H,W,3)`` uint8/uint16 ``codes``,
    its histograms counted at the codes' own resolution without a float copy of the image."""
    planes = torch.from_numpy(np.ascontiguousarray(codes.transpose(2, 0, 1)))
    if planes.dtype == torch.uint16:
        planes = planes.to(torch.int32)
    counts = lutkern.channel_histogram(planes.unsqueeze(0), 1 << bit_depth)
    flat = planes.reshape(3, -1)
    step = max(1, math.ceil(flat.shape[-1] / JOINT_PIXELS))
    pixels = flat[:, ::step].float() / ((1 << bit_depth) - 1)
    return _assemble(counts, _joint(pixels.unsqueeze(0)))


def quantile(stats: torch.Tensor, q: float) -> torch.Tensor:
    """``(B,3)`` the per-channel quantile ``q`` (one of :data:`QUANTILES`) held in ``stats``."""
    k = QUANTILES.index(q)
    return stats[:, :3 * len(QUANTILES)].view(-1, 3, len(QUANTILES))[..., k]


def channel_mean(stats: torch.Tensor) -> torch.Tensor:
    """``(B,3)`` the per-channel means held in ``stats``."""
    start = 3 * len(QUANTILES)
    return stats[:, start:start + 3]


def saturation_mean(stats: torch.Tensor) -> torch.Tensor:
    """``(B,)`` the mean saturation held in ``stats``."""
    return stats[:, 3 * (len(QUANTILES) + 2)]


# ------------------------------------------------------------------------------------------ levels curves


def levels_curve(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``clamp((x - lo) / (hi - lo), 0, 1) ** gamma`` per channel: ``x`` ``(B,3,...)``, parameters ``(B,3)``
    (``hi - lo`` kept at least :data:`MIN_RANGE`; 0 stays 0 for every gamma)."""
    shape = lo.shape + (1,) * (x.dim() - 2)
    lo, hi, gamma = lo.view(shape), hi.view(shape), gamma.view(shape)
    base = ((x - lo) / (hi - lo).clamp(min=MIN_RANGE)).clamp(0, 1)
    return torch.where(base > 0, base.clamp(min=1e-12) ** gamma, torch.zeros_like(base))


def gamma_to_mid(value: torch.Tensor, grey: float = 0.5) -> torch.Tensor:
    """The gamma that sends ``value`` (in (0,1)) to ``grey`` (mid grey by default), within
    :data:`GAMMA_RANGE`."""
    v = value.clamp(1e-3, 1 - 1e-3)
    return (math.log(grey) / v.log()).clamp(*GAMMA_RANGE)


def _identity(stats):
    zeros = torch.zeros_like(channel_mean(stats))
    return zeros, zeros + 1, zeros + 1


def _levels(p: float):
    def params(stats):
        lo, hi = quantile(stats, p), quantile(stats, 1 - p)
        return lo, hi, torch.ones_like(lo)
    return params


def _then_gamma(levels, source):
    """``levels`` followed by the gamma that takes the levelled ``source`` value of each channel (its mean:
    approximately, as clipping moves a mean; a quantile: exactly) to mid grey."""
    def params(stats):
        lo, hi, _ = levels(stats)
        value = ((source(stats) - lo) / (hi - lo).clamp(min=MIN_RANGE)).clamp(0, 1)
        return lo, hi, gamma_to_mid(value)
    return params


def _grey_world(stats):
    mean = channel_mean(stats)
    gain = (0.5 / mean.clamp(min=1e-6)).clamp(1 / MAX_GAIN, MAX_GAIN)
    return torch.zeros_like(mean), 1 / gain, torch.ones_like(mean)


# The levels of the automatic corrections: none, each channel's minimum / maximum to 0 / 1 (stretch), or
# auto levels clipping p% of each channel at either end (levels_p).
LEVELS = {"none": _identity, "stretch": _levels(0.0),
          **{f"levels_{p:g}": _levels(p / 100) for p in (0.1, 0.5, 1, 2, 5)}}
# The gammas that may follow them: each channel's levelled mean (auto_gamma) or median (median_gamma) to
# mid grey.
GAMMAS = {"auto_gamma": channel_mean, "median_gamma": lambda stats: quantile(stats, 0.5)}


def _normalisers() -> dict:
    out = {"none": _identity,
           "grey_world": _grey_world}  # each channel's mean to mid grey (a gain within [1/4, 4])
    for gamma, source in GAMMAS.items():
        out[gamma] = _then_gamma(_identity, source)
    for name, levels in LEVELS.items():
        if name != "none":
            out[name] = levels
            out.update({f"{name}+{gamma}": _then_gamma(levels, source) for gamma, source in GAMMAS.items()})
    return out


# name -> stats (B,STATS_DIM) -> (lo, hi, gamma), each (B,3). "none" is the identity. Every levels of
# LEVELS, alone or followed by each gamma of GAMMAS, and a grey-world gain: the space of automatic
# corrections the diagnosis searches.
NORMALISERS = _normalisers()
