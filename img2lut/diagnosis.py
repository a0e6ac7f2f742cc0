"""Which recipe the pairs call for: what ``python -m img2lut.train`` decides when no recipe flag is given.

A user cannot be expected to know whether their edits are one look, a normalising grade (auto exposure,
white balance, levels) or an image-adaptive one. :func:`diagnose` measures it on the training pairs:

1. For every correction of :data:`img2lut.image_stats.NORMALISERS` (``none`` included), one LUT is
   fitted quickly (at :data:`LUT_SIZE`, on every :data:`PIXEL_STRIDE`-th pixel) to (corrected input,
   target): how well a single look explains the pairs once each input is corrected from its own
   statistics.
2. One LUT per pair is fitted on a sample of :data:`SAMPLE_PAIRS` pairs: how well a grade that may differ
   from photo to photo could do. The *gain* is the per-pair fits' PSNR over the best single fit's, on the
   same pairs.
3. How the targets' statistics vary against the inputs' (the spread of their log channel means): a
   grade that normalises leaves the targets more alike than the inputs.

Decision: the correction with the best single fit is kept when it beats ``none`` by
:data:`MIN_NORMALISE_GAIN_DB`; then, if that single fit already reaches :data:`ONE_LOOK_PSNR_DB` or the
per-pair fits gain less than :data:`ONE_LOOK_GAIN_DB` over it, the pairs are **one look** (after that
correction): the model is the fitted LUT, refitted on all pairs, and no CNN is trained (a CNN cannot
beat the fit on photos it has not seen when nothing varies to read). Otherwise the grade is
**adaptive**: the CNN is trained from the fit, its levels curves starting at the correction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .fitting import fit_lut
from .image_stats import NORMALISERS, image_stats, levels_curve
from .metrics import psnr_from_mse

RECIPES = ("one_look", "adaptive")
LUT_SIZE = 17
STEPS = 150
SAMPLE_PAIRS = 8
# Every PIXEL_STRIDE-th pixel of each row and column is what the fits see (the statistics read all).
PIXEL_STRIDE = 2
ONE_LOOK_PSNR_DB = 45.0
ONE_LOOK_GAIN_DB = 3.0
MIN_NORMALISE_GAIN_DB = 0.5


@dataclass
class Diagnosis:
    """What :func:`diagnose` found (dB are mean per-image PSNR on the training pairs)."""

    recipe: str  # one of RECIPES
    normalise: str  # a key of NORMALISERS
    single_fit_db: dict  # correction -> PSNR of one LUT fitted after it
    per_pair_db: float  # one LUT per pair, on the sample
    best_single_on_sample_db: float  # the chosen correction's single fit, on the same sample
    input_spread: float  # std over pairs of the log2 channel means of the inputs
    target_spread: float  # ... of the targets

    @property
    def gain_db(self) -> float:
        return self.per_pair_db - self.best_single_on_sample_db

    def describe(self) -> str:
        single = self.single_fit_db[self.normalise]
        after = "" if self.normalise == "none" else f" after the {self.normalise} correction"
        found = (f"one LUT{after} reaches {single:.1f} dB on the training pairs, one LUT per pair "
                 f"{self.per_pair_db:.1f} dB (+{self.gain_db:.1f} dB); the targets' exposure and colour "
                 f"vary {self.target_spread / max(self.input_spread, 1e-9):.2f}x as much as the inputs'")
        if self.recipe == "one_look":
            return (f"diagnosis: one look{after} ({found}): the model is the LUT fitted to all pairs; "
                    "--recipe adaptive trains the CNN anyway")
        return (f"diagnosis: an image-adaptive grade ({found}): the CNN learns what varies, its levels "
                f"curves starting at the {self.normalise} correction; --recipe one_look keeps the fit alone")

    def to_dict(self) -> dict:
        return {**asdict(self), "gain_db": self.gain_db, "text": self.describe()}


def normalised(inputs: torch.Tensor, stats: torch.Tensor, name: str) -> torch.Tensor:
    """``inputs`` ``(N,3,H,W)`` through the correction ``name`` read off their ``stats``."""
    return levels_curve(inputs, *NORMALISERS[name](stats))


def _image_psnr(inputs: torch.Tensor, targets: torch.Tensor, luts: torch.Tensor) -> torch.Tensor:
    import lutkern

    out = lutkern.apply_lut(inputs, luts)
    mse = (out - targets).double().square().mean((1, 2, 3)).clamp(min=1e-12)
    return torch.tensor([psnr_from_mse(float(m)) for m in mse])


def _spread(images: torch.Tensor) -> float:
    means = images.double().clamp(min=1 / 255).mean((2, 3)).log2()
    return float(means.std(0).mean())


def _fit(inputs, targets, seed: int, backend: str | None) -> torch.Tensor:
    pixels = min(inputs[:, 0].numel(), 1 << 15)
    return fit_lut(inputs, targets, lut_size=LUT_SIZE, steps=STEPS, batch_pixels=pixels, seed=seed,
                   backend=backend).lut


def diagnose(inputs: torch.Tensor, targets: torch.Tensor, *, normalise: str | None = None, seed: int = 0,
             backend: str | None = None) -> Diagnosis:
    """Diagnose the training pairs ``inputs``, ``targets`` ``(N,3,H,W)`` in [0,1]. ``normalise``: a given
    correction (only it is fitted), or None to choose one."""
    stats = image_stats(inputs)
    inputs = inputs[..., ::PIXEL_STRIDE, ::PIXEL_STRIDE]
    targets = targets[..., ::PIXEL_STRIDE, ::PIXEL_STRIDE]
    names = list(NORMALISERS) if normalise is None else [normalise]
    sample = torch.linspace(0, len(inputs) - 1, min(SAMPLE_PAIRS, len(inputs))).round().long().unique()
    single, on_sample = {}, {}
    for name in names:
        x = normalised(inputs, stats, name)
        lut = _fit(x, targets, seed, backend)
        psnr = _image_psnr(x, targets, lut)
        single[name], on_sample[name] = float(psnr.mean()), float(psnr[sample].mean())
    best = max(names, key=single.get)
    if normalise is None and single[best] - single["none"] < MIN_NORMALISE_GAIN_DB:
        best = "none"
    per_pair = [float(_image_psnr(inputs[i:i + 1], targets[i:i + 1],
                                  _fit(inputs[i:i + 1], targets[i:i + 1], seed, backend)).mean())
                for i in sample.tolist()]
    per_pair_db = sum(per_pair) / len(per_pair)
    one_look = single[best] >= ONE_LOOK_PSNR_DB or per_pair_db - on_sample[best] < ONE_LOOK_GAIN_DB
    return Diagnosis("one_look" if one_look else "adaptive", best, single, per_pair_db, on_sample[best],
                     _spread(inputs), _spread(targets))

