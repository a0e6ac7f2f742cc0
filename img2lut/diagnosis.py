"""Which recipe the pairs call for: what ``python -m img2lut.train`` decides when no recipe flag is given.

A user cannot be expected to know whether their edits are one look, a normalising grade (auto exposure,
white balance, levels) or an image-adaptive one. :func:`diagnose` measures it on the training pairs (at
most :data:`DIAGNOSIS_PAIRS` of them, evenly spread over the set, in training):

1. For every correction of :data:`img2lut.image_stats.NORMALISERS` (``none`` included), one LUT is
   fitted quickly (all at once, :func:`fit_luts`; at :data:`LUT_SIZE`, on every
   :data:`PIXEL_STRIDE`-th pixel) to (corrected input, target): how well a single look explains the
   pairs once each input is corrected from its own statistics.
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

import lutkern

from .fitting import DEFAULT_WEIGHTS
from .image_stats import NORMALISERS, image_stats, levels_curve

RECIPES = ("one_look", "adaptive")
LUT_SIZE = 17
STEPS = 150
LR = 5e-2
BATCH_PIXELS = 1 << 12
SAMPLE_PAIRS = 8
DIAGNOSIS_PAIRS = 256  # training pairs diagnosed at most, evenly spread over the set
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


def fit_luts(inputs: torch.Tensor, targets: torch.Tensor, *, seed: int = 0,
             backend: str | None = None) -> torch.Tensor:
    """``(B,D,D,D,3)``: one LUT of :data:`LUT_SIZE` fitted to each of ``B`` pixel sets, ``inputs`` and
    ``targets`` ``(B,3,P)``, all at once: :func:`img2lut.fitting.fit_lut`'s recipe (Adam, cosine-decayed
    learning rate, its default regularizers) on :data:`BATCH_PIXELS` random pixels per step."""
    gen = torch.Generator().manual_seed(seed)
    lut = lutkern.identity_lut(LUT_SIZE).expand(len(inputs), -1, -1, -1, -1).clone().requires_grad_(True)
    opt = torch.optim.Adam([lut], lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=STEPS, eta_min=0.05 * LR)
    count = min(BATCH_PIXELS, inputs.shape[-1])
    for _ in range(STEPS):
        idx = torch.randint(0, inputs.shape[-1], (count,), generator=gen)
        out = lutkern.apply_lut(inputs[..., idx].unsqueeze(2), lut, backend=backend)
        loss = (out.squeeze(2) - targets[..., idx]).square().mean() + lutkern.lut_regularizers(
            lut, tv=DEFAULT_WEIGHTS["tv"], mono=DEFAULT_WEIGHTS["mono"], smooth=DEFAULT_WEIGHTS["smooth"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return lut.detach()


def _image_psnr(inputs: torch.Tensor, targets: torch.Tensor, luts: torch.Tensor,
                backend: str | None) -> torch.Tensor:
    """``(B,N)`` PSNR of each image of ``inputs``/``targets`` ``(B,N,3,h,w)`` through its set's LUT."""
    b, n = inputs.shape[:2]
    flat = lambda t: t.transpose(1, 2).reshape(b, 3, n, -1)  # noqa: E731  (B,3,N,h*w)
    out = lutkern.apply_lut(flat(inputs), luts, backend=backend)
    mse = (out - flat(targets)).double().square().mean((1, 3)).clamp(min=1e-12)
    return (10 * torch.log10(1 / mse)).float()


def _spread(images: torch.Tensor) -> float:
    means = images.double().clamp(min=1 / 255).mean((2, 3)).log2()
    return float(means.std(0).mean())


def diagnose(inputs: torch.Tensor, targets: torch.Tensor, *, normalise: str | None = None, seed: int = 0,
             backend: str | None = None) -> Diagnosis:
    """Diagnose the training pairs ``inputs``, ``targets`` ``(N,3,H,W)`` in [0,1]. ``normalise``: a given
    correction (only it is fitted), or None to choose one."""
    stats = image_stats(inputs)
    spreads = _spread(inputs), _spread(targets)
    inputs = inputs[..., ::PIXEL_STRIDE, ::PIXEL_STRIDE].float()
    targets = targets[..., ::PIXEL_STRIDE, ::PIXEL_STRIDE].float()
    names = list(NORMALISERS) if normalise is None else [normalise]
    corrected = torch.stack([normalised(inputs, stats, name) for name in names])  # (C,N,3,h,w)
    pixels = lambda t: t.transpose(1, 2).flatten(2)  # noqa: E731  (C,3,N*h*w)
    expanded = targets.expand(len(names), *targets.shape)
    luts = fit_luts(pixels(corrected), pixels(expanded), seed=seed, backend=backend)
    psnr = _image_psnr(corrected, expanded, luts, backend)  # (C,N)
    sample = torch.linspace(0, len(inputs) - 1, min(SAMPLE_PAIRS, len(inputs))).round().long().unique()
    single = {name: float(psnr[i].mean()) for i, name in enumerate(names)}
    best = max(names, key=single.get)
    if normalise is None and single[best] - single["none"] < MIN_NORMALISE_GAIN_DB:
        best = "none"
    on_sample = float(psnr[names.index(best), sample].mean())
    each = lambda t: t[sample].flatten(2).unsqueeze(1)  # noqa: E731  (S,1,3,h*w): one set per pair
    per_pair_luts = fit_luts(each(inputs).squeeze(1), each(targets).squeeze(1), seed=seed, backend=backend)
    per_pair_db = float(_image_psnr(each(inputs).unsqueeze(-1), each(targets).unsqueeze(-1), per_pair_luts,
                                    backend).mean())
    one_look = single[best] >= ONE_LOOK_PSNR_DB or per_pair_db - on_sample < ONE_LOOK_GAIN_DB
    return Diagnosis("one_look" if one_look else "adaptive", best, single, per_pair_db, on_sample, *spreads)
