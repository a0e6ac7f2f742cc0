"""Which recipe the pairs call for: what ``python -m img2lut.train`` decides when no recipe flag is given.

A user cannot be expected to know whether their edits are one look, a normalising grade (auto exposure,
white balance, levels) or an image-adaptive one. :func:`diagnose` measures it on the training pairs (at
most :data:`DIAGNOSIS_PAIRS` of them, evenly spread over the set, in training):

1. For every correction of :data:`img2lut.image_stats.NORMALISERS` (``none`` included: 22 levels and
   gamma rules), one LUT is fitted quickly (all at once, :func:`fit_luts`; at :data:`LUT_SIZE`, on
   :data:`SINGLE_FIT_PIXELS` pixels of each pair) to (corrected input, target): how well a single look
   explains the pairs once each input is corrected from its own statistics.
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

import math
from dataclasses import asdict, dataclass

import torch

import lutkern

from .codes import BATCH, Codes
from .fitting import DEFAULT_WEIGHTS
from .image_stats import NORMALISERS, image_stats, levels_curve

RECIPES = ("one_look", "adaptive")
LUT_SIZE = 17
STEPS = 150
LR = 5e-2
BATCH_PIXELS = 1 << 12
SAMPLE_PAIRS = 8
DIAGNOSIS_PAIRS = 256  # training pairs diagnosed at most, evenly spread over the set
PSNR_CHUNK = 16  # images measured at a time, under every correction at once
# Every PIXEL_STRIDE-th pixel of each row and column is what the fits see (the statistics read all); the
# one-LUT fits after each correction SINGLE_FIT_PIXELS random ones of them, the same in every pair.
SINGLE_FIT_PIXELS = 2048
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
    """``inputs`` ``(N,3,...)`` through the correction ``name`` read off their ``stats``."""
    return levels_curve(inputs, *NORMALISERS[name](stats))


def fit_luts(inputs: torch.Tensor, targets: torch.Tensor, *, seed: int = 0,
             backend: str | None = None) -> torch.Tensor:
    """``(B,D,D,D,3)``: one LUT of :data:`LUT_SIZE` fitted to each of ``B`` pixel sets, ``inputs`` ``(B,3,P)``
    and ``targets`` ``(B,3,P)`` (or ``(1,3,P)``: the same targets for every set), all at once:
    :func:`img2lut.fitting.fit_lut`'s recipe (Adam, cosine-decayed learning rate, its default
    regularizers) on :data:`BATCH_PIXELS` random pixels per step."""
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
    """``(B,N)`` PSNR of each image of ``inputs`` ``(B,3,N,...)`` through its set's LUT against ``targets``
    ``(B,3,N,...)`` (or ``(1,3,N,...)``: the same for every set), :data:`PSNR_CHUNK` images at a time
    (their differences made in float64)."""
    b, n = inputs.shape[0], inputs.shape[2]
    psnr = torch.empty(b, n)
    for start in range(0, n, PSNR_CHUNK):
        part = inputs[:, :, start:start + PSNR_CHUNK].flatten(3)  # (B,3,n,h*w)
        out = lutkern.apply_lut(part, luts, backend=backend)
        diff = out - targets[:, :, start:start + PSNR_CHUNK].flatten(3)
        mse = diff.double().square().mean((1, 3)).clamp(min=1e-12)
        psnr[:, start:start + PSNR_CHUNK] = (10 * torch.log10(1 / mse)).float()
    return psnr


def _log_means(images: torch.Tensor) -> torch.Tensor:
    """``(N,3)`` log2 channel means of images ``(N,3,H,W)`` (at least 1/255)."""
    return images.double().clamp(min=1 / 255).mean((2, 3)).log2()


def _spread(means: torch.Tensor) -> float:
    return float(means.std(0).mean())


def _read(images: torch.Tensor | Codes, picked: torch.Tensor, sample: torch.Tensor, with_stats: bool
          ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the diagnosis reads of images ``(N,3,H,W)`` (a tensor, or codes made float
    :data:`img2lut.codes.BATCH` images at a time: the set is never whole as float): their statistics
    ``(N,STATS_DIM)`` (None unless ``with_stats``), log2 channel means ``(N,3)``, and of every
    :data:`PIXEL_STRIDE`-th pixel ``(N,3,h,w)`` the ``picked`` ones ``(N,3,P)`` of every image and all
    of the images ``sample`` ``(S,3,h,w)``, float32."""
    stats, means, some, strided = [], [], [], []
    for start in range(0, len(images), BATCH):
        batch = images[start:start + BATCH]
        if with_stats:
            stats.append(image_stats(batch))
        means.append(_log_means(batch))
        small = batch[..., ::PIXEL_STRIDE, ::PIXEL_STRIDE].float()
        some.append(small.flatten(2)[..., picked])
        strided.append(small[sample[(sample >= start) & (sample < start + len(small))] - start])
    return torch.cat(stats) if with_stats else None, torch.cat(means), torch.cat(some), torch.cat(strided)


def diagnose(inputs: torch.Tensor | Codes, targets: torch.Tensor | Codes, *, normalise: str | None = None,
             seed: int = 0, backend: str | None = None) -> Diagnosis:
    """Diagnose the training pairs ``inputs``, ``targets`` ``(N,3,H,W)`` in [0,1], tensors or
    :class:`img2lut.codes.Codes` (read a batch at a time). ``normalise``: a given correction (only it is
    fitted), or None to choose one.

    Memory: :data:`SINGLE_FIT_PIXELS` of each pair, those of each input through each correction fitted,
    and the strided pixels of the :data:`SAMPLE_PAIRS` pairs, never a float copy of the whole set."""
    n = len(inputs)
    strided = math.ceil(inputs.shape[-2] / PIXEL_STRIDE) * math.ceil(inputs.shape[-1] / PIXEL_STRIDE)
    picked = torch.randperm(strided, generator=torch.Generator().manual_seed(seed))[:SINGLE_FIT_PIXELS]
    sample = torch.linspace(0, n - 1, min(SAMPLE_PAIRS, n)).round().long().unique()
    stats, input_means, some, sample_inputs = _read(inputs, picked, sample, with_stats=True)
    _, target_means, target_some, sample_targets = _read(targets, picked, sample, with_stats=False)
    names = list(NORMALISERS) if normalise is None else [normalise]
    corrected = torch.empty(len(names), *some.transpose(0, 1).shape)  # (C,3,N,P): one pixel set each
    for i, name in enumerate(names):
        corrected[i] = normalised(some, stats, name).transpose(0, 1)
    shared = target_some.transpose(0, 1).unsqueeze(0)  # (1,3,N,P): every correction's
    luts = fit_luts(corrected.flatten(2), shared.flatten(2), seed=seed, backend=backend)
    psnr = _image_psnr(corrected, shared, luts, backend)  # (C,N)
    del corrected
    single = {name: float(psnr[i].mean()) for i, name in enumerate(names)}
    best = max(names, key=single.get)
    if normalise is None and single[best] - single["none"] < MIN_NORMALISE_GAIN_DB:
        best = "none"
    on_sample = float(psnr[names.index(best), sample].mean())
    per_pair_luts = fit_luts(sample_inputs.flatten(2), sample_targets.flatten(2), seed=seed, backend=backend)
    per_pair_db = float(_image_psnr(sample_inputs.unsqueeze(2), sample_targets.unsqueeze(2), per_pair_luts,
                                    backend).mean())
    one_look = single[best] >= ONE_LOOK_PSNR_DB or per_pair_db - on_sample < ONE_LOOK_GAIN_DB
    return Diagnosis("one_look" if one_look else "adaptive", best, single, per_pair_db, on_sample,
                     _spread(input_means), _spread(target_means))
