"""Per-shot LUTs for video: cuts found from the frames, one LUT per shot, and how much a grade flickers.

A model predicts a LUT from each frame; frame to frame those LUTs wobble with noise, compression and
motion, and a grade that follows them flickers. Within a shot the scene, and so the grade it calls for,
stays the same: :class:`ShotTracker` finds the cuts and averages the frames' LUTs over each shot, so every
frame of a shot is graded with one LUT (the mean; for the basis head, a LUT linear in the blend weights,
that is the LUT of the mean weights).

Cuts: the colour histogram of each frame (``img2lut.model.colour_histogram`` of the thumbnail the CNN
sees; each channel's row normalised to sum 1) against the previous frame's: a cut where the L1 distance,
averaged over the three channels (0: the same colours, 2: none in common), exceeds ``threshold``.
A pan or a zoom within a scene moves the histogram a little from frame to frame; a cut to another scene
moves it at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .model import colour_histogram

CUT_THRESHOLD = 0.5


@dataclass
class Shot:
    """Frames ``first`` .. ``last`` (inclusive), the sum of their LUTs (``lut_sum``, float64) and the sum of
    the frame-to-frame RMS changes of their LUTs (``change_sum``, over ``last - first`` steps)."""

    first: int
    last: int
    lut_sum: torch.Tensor
    change_sum: float = 0.0

    @property
    def frames(self) -> int:
        return self.last - self.first + 1

    @property
    def lut(self) -> torch.Tensor:
        """``(S,S,S,3)`` float32: the mean of the frames' LUTs."""
        return (self.lut_sum / self.frames).float()

    @property
    def flicker(self) -> float:
        """The mean RMS change of the predicted LUT from one frame to the next within the shot (0 for a
        one-frame shot): what a per-frame grade would wobble by."""
        return self.change_sum / (self.frames - 1) if self.frames > 1 else 0.0


@dataclass
class ShotTracker:
    """Feed it each frame's thumbnail and predicted LUT in order (:meth:`add`); ``shots`` is the list of
    :class:`Shot` so far."""

    threshold: float = CUT_THRESHOLD
    shots: list[Shot] = field(default_factory=list)
    _histogram: torch.Tensor | None = None
    _lut: torch.Tensor | None = None

    def add(self, thumb: torch.Tensor, lut: torch.Tensor) -> bool:
        """Frame ``thumb`` ``(3,h,w)`` in [0,1] with its predicted ``lut`` ``(S,S,S,3)``; True when it starts
        a new shot (the first frame does)."""
        histogram = frame_histogram(thumb)
        lut = lut.detach().double().cpu()
        index = self.shots[-1].last + 1 if self.shots else 0
        cut = self._histogram is None or histogram_distance(self._histogram, histogram) > self.threshold
        if cut:
            self.shots.append(Shot(index, index, lut.clone()))
        else:
            shot = self.shots[-1]
            shot.last, shot.lut_sum = index, shot.lut_sum + lut
            shot.change_sum += float((lut - self._lut).square().mean().sqrt())
        self._histogram, self._lut = histogram, lut
        return cut


def frame_histogram(thumb: torch.Tensor) -> torch.Tensor:
    """``(3,B)``: each channel's soft histogram of ``thumb`` ``(3,h,w)``, normalised to sum 1."""
    h = colour_histogram(thumb.unsqueeze(0))[0]
    return h / h.sum(1, keepdim=True)


def histogram_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """L1 distance of two :func:`frame_histogram` s, averaged over the channels: 0 (same) .. 2 (disjoint)."""
    return float((a - b).abs().sum(1).mean())
