"""The adaptive recipe's first stage: what varies from pair to pair, read linearly off the statistics.

The basis head blends K basis LUTs with weights its MLP reads off the CNN's pooled features and the
statistics of :mod:`img2lut.image_stats`. Trained from one fitted LUT on a few hundred pairs, that read
learns the photos it saw rather than the rule (docs/generalization.md). :func:`fit_readout` starts the head
at a read that holds on photos it has not seen, in three steps:

1. *Per-pair weights.* The shared LUT, the K basis LUTs and a free weight vector per pair are fitted
   together to a sample of each pair's pixels (Adam, the run's regularizers) through the levels curves
   of the run's correction, where the head's curves start, then the 3D LUT. Each pair constrains only
   the colours it holds; the bases are shared.
2. *Ordered directions.* The weights' mean moves into the shared LUT; the per-pair residuals are
   re-expressed along their principal directions (most variance first), each weight scaled to
   [-:data:`CODE_RANGE`, :data:`CODE_RANGE`] over the pairs.
3. *A bounded linear read.* A ridge regression of the first k weights on the standardised statistics,
   each prediction clamped to the range the pairs' weights took. k (0: the shared LUT alone) and the
   ridge strength are chosen by cross-validation holding out whole photographs (at most
   :data:`MAX_FOLDS` folds, scored by the held-out pairs' mean PSNR): the simplest choice within one
   standard error of the best.

The read is then written into the head's MLP exactly: for each of the k weights, :data:`SEGMENTS` + 1
hidden units compute, from the statistics alone, the piecewise-linear function of the linear read that
is tanh's inverse on the clamped range and flat outside it, so after the head's tanh the weight is the
clamped read (to within the interpolation of atanh on [-0.5, 0.5]: under 1e-3). The other units' output
weights to those k weights start at zero: epoch 0 is the readout, and training continues from it (the
bases left unused keep their random output rows and zero LUTs, free to learn).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

import lutkern

from .codes import BATCH, Codes
from .diagnosis import normalised
from .image_stats import STATS_DIM
from .losses import LossWeights, total_loss
from .metrics import lattice_coverage
from .model import ResNetLUTGenerator

READOUT_PAIRS = 256  # pairs the readout is fitted on at most, evenly spread over the set
PIXELS = 1 << 14  # sampled once from each pair (the same positions in every pair)
CV_PIXELS = 1 << 12  # of them, what cross-validation scores
RANKS = (1, 2, 4)  # the per-pair fits, each continuing the one before with more bases
# Steps of the first fit and of each next one: enough to see every sampled pixel PASSES (STAGE_PASSES)
# times, within [MIN_STEPS, STEPS] ([MIN_STEPS, STAGE_STEPS]).
PASSES, STEPS = 32, 800
STAGE_PASSES, STAGE_STEPS = 16, 400
MIN_STEPS = 50
BATCH_PAIRS = 16
STEP_PIXELS = 1 << 13  # of each pair in a step
REGULARIZED_PAIRS = 4  # of a step's pairs, whose LUTs the regularizers see (the costliest part of a step)
LR = 1e-2
INIT_SCALE = 0.1  # the per-pair weights start random (the bases at zero), so both get gradients
CODE_DECAY = 1e-5  # a small L2 on the per-pair weights fixes their scale against the bases'
CODE_RANGE = 0.5
SEGMENTS = 16
RIDGES = (1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)  # times the number of pairs, on standardised statistics
MAX_FOLDS = 8
MIN_STD = 2 / 255  # a statistic's spread counted at least this (one 8-bit code of 2 * stats - 1)


@dataclasses.dataclass
class Readout:
    """What :func:`fit_readout` chose (dB: mean per-pair PSNR of the cross-validation's held-out pairs)."""

    components: int  # k, the weights read off the statistics (0: the shared LUT alone)
    rank: int  # of the per-pair fit they were read from
    ridge: float
    cv_db: float  # of the choice
    shared_cv_db: float  # of k = 0
    pairs: int
    folds: int
    by_rank: dict  # rank (a str, as in JSON) -> the best cross-validated dB of the weights of that fit

    def describe(self) -> str:
        if self.components == 0:
            return (f"first stage: no weight reads off the statistics better than the shared LUT across "
                    f"photographs ({self.shared_cv_db:.1f} dB, {self.folds}-fold over {self.pairs} pairs)")
        return (f"first stage: {self.components} basis weight(s) read linearly off the statistics (ridge "
                f"{self.ridge:g}): {self.cv_db:.1f} dB on photographs held out in turn vs "
                f"{self.shared_cv_db:.1f} dB for the shared LUT ({self.folds}-fold over {self.pairs} pairs)")


@dataclasses.dataclass
class _Linear:
    """A ridge read ``(F - mean) / std @ weight[:-1] + weight[-1]`` of features ``F`` ``(N,D)``."""

    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)
    weight: torch.Tensor  # (D+1, K)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std @ self.weight[:-1] + self.weight[-1]


def _features(stats: torch.Tensor) -> torch.Tensor:
    """What the head's MLP reads of the statistics (``2 * stats - 1``), float64."""
    return 2 * stats.double() - 1


def ridge(features: torch.Tensor, targets: torch.Tensor, strength: float) -> _Linear:
    """Ridge regression of ``targets`` ``(N,K)`` on standardised ``features`` ``(N,D)`` (the intercept not
    penalised), penalty ``strength * N``."""
    mean, std = features.mean(0), features.std(0, correction=0).clamp(min=MIN_STD)
    z = torch.cat([(features - mean) / std, torch.ones(len(features), 1, dtype=features.dtype)], 1)
    penalty = torch.eye(z.shape[1], dtype=z.dtype) * strength * len(z)
    penalty[-1, -1] = 0
    return _Linear(mean, std, torch.linalg.solve(z.T @ z + penalty, z.T @ targets))


def _pixels(images: torch.Tensor | Codes, rows: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
    """``(n,3,P)`` float32: the pixels ``pick`` (flat indices) of the images ``rows``, a batch at a time."""
    return torch.cat([images[rows[i:i + BATCH]].flatten(2)[..., pick].float()
                      for i in range(0, len(rows), BATCH)])


@dataclasses.dataclass
class _Tables:
    """The head's 3D LUTs, flat in ``.cube`` row order: the shared ``base`` ``(S^3*3,)`` and ``basis``
    ``(r,S^3*3)``; a pair with weights ``w`` ``(r,)`` gets ``base + w @ basis``."""

    base: torch.Tensor
    basis: torch.Tensor

    def luts(self, weights: torch.Tensor, size: int) -> torch.Tensor:
        k = weights.shape[1]
        return (self.base + weights.to(self.base) @ self.basis[:k]).view(-1, size, size, size, 3)


def _through(model: ResNetLUTGenerator, tables: _Tables, weights: torch.Tensor, lx: torch.Tensor):
    """Levelled pixels ``lx`` ``(n,3,P)`` through the LUTs of ``weights`` ``(n,k)``; and the LUTs."""
    lut = tables.luts(weights, model.lut_size)
    return lutkern.apply_lut(lx.unsqueeze(2), lut, interpolation=model.interpolation,
                             backend=model.backend).squeeze(2), lut


def _pair_psnr(model, tables, weights, lx, y) -> torch.Tensor:
    """``(n,)`` PSNR of each pair's levelled pixels through its LUT against its targets ``y``."""
    with torch.no_grad():
        out, _ = _through(model, tables, weights, lx)
    mse = (out.double() - y.double()).square().mean((1, 2)).clamp(min=1e-10)
    return 10 * torch.log10(1 / mse)


def _fit_stage(model, tables: _Tables, codes: torch.Tensor, lx, y, steps: int, losses: LossWeights,
               gen: torch.Generator, advance) -> torch.Tensor:
    """Fit ``tables`` (in place) and the per-pair weights ``codes`` ``(n,r)`` (returned) together."""
    codes = codes.clone().requires_grad_(True)
    params = [tables.base.requires_grad_(True), tables.basis.requires_grad_(True), codes]
    opt = torch.optim.Adam(params, lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for _ in range(steps):
        b = torch.randint(0, len(lx), (min(BATCH_PAIRS, len(lx)),), generator=gen)
        p = torch.randint(0, lx.shape[-1], (min(STEP_PIXELS, lx.shape[-1]),), generator=gen)
        out, lut = _through(model, tables, codes[b], lx[b][..., p])
        # The regularizers (a mean over LUTs) on a few of the batch's, at random: the same expected loss.
        loss, _ = total_loss(out, y[b][..., p], lut[:REGULARIZED_PAIRS], losses)
        loss = loss + CODE_DECAY * codes[b].square().sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        advance()
    for t in params:
        t.requires_grad_(False)
        t.grad = None
    return codes.detach()


@torch.no_grad()
def _principal(tables: _Tables, codes: torch.Tensor, coverage: torch.Tensor) -> tuple[_Tables, torch.Tensor]:
    """The same per-pair LUTs with the weights' mean moved into the shared LUT and the residuals
    ``codes @ basis`` along their principal directions, most variance first, each LUT entry weighted by
    the ``coverage`` of the pixels (a direction is how it changes pixels, not the lattice no pixel
    reaches), each weight scaled to [-CODE_RANGE, CODE_RANGE]: the new tables and weights ``(n,r)``
    (directions with no variance dropped)."""
    basis, codes = tables.basis.double(), codes.double()
    mean = codes.mean(0)
    centred = codes - mean
    _, r = torch.linalg.qr((basis * coverage.sqrt()).T)  # the weighted basis = r.T @ q.T
    u, s, _ = torch.linalg.svd(centred @ r.T, full_matrices=False)
    kept = int((s > s[0] * 1e-6).sum()) if len(s) and s[0] > 0 else 0
    weights = u[:, :kept] * s[:kept]
    directions = (u[:, :kept] / s[:kept]).T @ centred @ basis  # weights @ directions = the residuals
    scale = weights.abs().amax(0) / CODE_RANGE
    base = tables.base.double() + mean @ basis
    return _Tables(base.float(), (directions * scale[:, None]).float()), weights / scale


def _folds(groups: list[str]) -> list[torch.Tensor]:
    """Boolean masks ``(n,)`` of the held-out pairs of each fold: whole groups, dealt round in order of
    first appearance, at most :data:`MAX_FOLDS` folds."""
    order = list(dict.fromkeys(groups))
    count = min(len(order), MAX_FOLDS)
    fold_of = {g: i % count for i, g in enumerate(order)}
    assigned = torch.tensor([fold_of[g] for g in groups])
    return [assigned == f for f in range(count)]


def _cross_validate(model, tables: _Tables, weights: torch.Tensor, features: torch.Tensor, lx, y,
                    folds: list) -> dict:
    """Held-out PSNR ``{(k, ridge): (n,)}`` of each pair when its fold's weights are read off the others'
    (k = 0: the shared LUT alone, the same under every ridge)."""
    scores = {(k, lam): torch.zeros(len(lx), dtype=torch.float64)
              for k in range(weights.shape[1] + 1) for lam in RIDGES}
    for held in folds:
        kept = ~held
        shared = _pair_psnr(model, tables, weights[held][:, :0], lx[held], y[held])
        lo, hi = weights[kept].amin(0), weights[kept].amax(0)
        for lam in RIDGES:
            scores[0, lam][held] = shared
            read = ridge(features[kept], weights[kept], lam)(features[held]).clamp(lo, hi)
            for k in range(1, weights.shape[1] + 1):
                scores[k, lam][held] = _pair_psnr(model, tables, read[:, :k], lx[held], y[held])
    return scores


def _choose(scores: dict, folds: list) -> tuple:
    """The simplest key ``(k, rank, ridge)`` within one standard error of the best (Breiman's rule): the
    best mean held-out PSNR less the standard error of its folds' means; among those, the fewest
    weights, then the lowest rank, then the strongest ridge."""
    best = max(scores, key=lambda key: float(scores[key].mean()))
    means = torch.stack([scores[best][f].mean() for f in folds])
    error = float(means.std() / math.sqrt(len(folds))) if len(folds) > 1 else 0.0
    floor = float(scores[best].mean()) - error
    return min((key for key, v in scores.items() if float(v.mean()) >= floor),
               key=lambda key: (key[0], key[1], -key[2]))


@torch.no_grad()
def _write(model: ResNetLUTGenerator, read: _Linear, lo: torch.Tensor, hi: torch.Tensor) -> None:
    """Make the head's weights ``0..k-1`` the clamped linear ``read`` of its statistics (see the module
    docstring); k = ``read.weight.shape[1]``."""
    first, last = model.weight_generator[0], model.weight_generator[-1]
    pooled = first.in_features - STATS_DIM
    units = SEGMENTS + 1
    k = read.weight.shape[1]
    last.weight[:k] = 0
    for j in range(k):
        a = read.weight[:-1, j] / read.std
        b = read.weight[-1, j] - (read.mean / read.std) @ read.weight[:-1, j]
        rows = slice(j * units, (j + 1) * units)
        first.weight[rows] = 0
        if hi[j] - lo[j] < 1e-9:
            first.bias[rows] = 0
            last.bias[j] = math.atanh(float(lo[j]))
            continue
        knots = torch.linspace(float(lo[j]), float(hi[j]), units, dtype=torch.float64)
        values = torch.atanh(knots)
        slopes = values.diff() / knots.diff()
        first.weight[rows, pooled:] = a.to(first.weight)
        first.bias[rows] = (b - knots).to(first.bias)
        last.weight[j, rows] = torch.cat([slopes[:1], slopes.diff(), -slopes[-1:]]).to(last.weight)
        last.bias[j] = float(values[0])


def fit_readout(model: ResNetLUTGenerator, inputs: torch.Tensor | Codes, targets: torch.Tensor | Codes,
                stats: torch.Tensor, groups: list[str], losses: LossWeights, seed: int = 0,
                console: Console | None = None, choice: Readout | None = None) -> Readout | None:
    """Start ``model``'s basis or curves head (its shared LUT already fitted) at the readout of the module
    docstring, fitted on the pairs ``inputs``, ``targets`` ``(N,3,H,W)`` (tensors or codes), whose
    statistics are ``stats`` ``(N,STATS_DIM)`` and photographs ``groups`` (a key per pair). Returns what
    it chose, or None (model unchanged) where fewer than two photographs allow no cross-validation.
    ``choice``: a readout chosen before (on part of these pairs) whose weights, rank and ridge are
    refitted as they are, without cross-validation; returned with this fit's pair count."""
    console = console or Console(quiet=True)
    units = (SEGMENTS + 1) * model.basis_luts
    if units > model.weight_generator[0].out_features:
        raise ValueError(f"the readout of {model.basis_luts} basis LUTs needs {units} hidden units, the "
                         f"head has {model.weight_generator[0].out_features}")
    n = len(inputs)
    rows = torch.linspace(0, n - 1, min(n, READOUT_PAIRS)).round().long().unique()
    groups = [groups[i] for i in rows.tolist()]
    if len(set(groups)) < 2 and choice is None:
        return None
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(inputs.shape[-2] * inputs.shape[-1], generator=gen)[:PIXELS]
    device = model.base_lut.device
    stats = stats[rows].float().to(device)
    # The pixels through each pair's levels curves as the head starts them (its offsets 0: the correction).
    lx = normalised(_pixels(inputs, rows, pick).to(device), stats, model.normalise)
    y = _pixels(targets, rows, pick).to(device)
    # How much of the pixels lands on each entry of the 3D LUT, in .cube row order (every channel alike).
    coverage = lattice_coverage(lx.transpose(0, 1).reshape(3, -1), model.lut_size, model.interpolation,
                                model.backend).double().unsqueeze(-1).expand(-1, -1, -1, 3).reshape(-1)
    features, folds = _features(stats), _folds(groups)
    ranks = [r for r in RANKS if r <= min(model.basis_luts, len(rows), choice.rank if choice else len(rows))]
    tables = _Tables(model.base_lut.detach().clone(), model.basis.new_zeros(0, model.basis.shape[1]))
    codes = torch.zeros(len(rows), 0, device=device)
    losses = dataclasses.replace(losses, ssim=0.0)
    scores, stages = {}, {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    epoch = len(rows) * lx.shape[-1] / (BATCH_PAIRS * STEP_PIXELS)  # steps that see every sampled pixel
    steps = [min(max(math.ceil(passes * epoch), MIN_STEPS), most) for passes, most in
             [(PASSES, STEPS)] + [(STAGE_PASSES, STAGE_STEPS)] * (len(ranks) - 1)]
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("first stage: what varies, read off the statistics", total=sum(steps))
        for rank, count in zip(ranks, steps, strict=True):
            added = rank - codes.shape[1]
            new = INIT_SCALE * torch.randn(len(rows), added, generator=gen)
            codes = torch.cat([codes, new.to(device)], 1)
            tables.basis = torch.cat([tables.basis, tables.basis.new_zeros(added, tables.basis.shape[1])])
            codes = _fit_stage(model, tables, codes, lx, y, count, losses, gen,
                               lambda: progress.advance(task))
            stages[rank] = _principal(tables, codes, coverage)
            if choice is not None:
                continue
            cv = _cross_validate(model, *stages[rank], features, lx[..., :CV_PIXELS], y[..., :CV_PIXELS],
                                 folds)
            scores.update({(k, rank, lam): v for (k, lam), v in cv.items()})
    k, rank, lam = (choice.components, choice.rank, choice.ridge) if choice else _choose(scores, folds)
    chosen, weights = stages[rank]
    with torch.no_grad():
        model.base_lut.copy_(chosen.base)
        model.basis.zero_()
        model.basis[:k] = chosen.basis[:k]
    if k:
        _write(model, ridge(features, weights[:, :k], lam), weights[:, :k].amin(0), weights[:, :k].amax(0))
    if choice is not None:
        return dataclasses.replace(choice, pairs=len(rows))
    mean = {key: float(v.mean()) for key, v in scores.items()}
    by_rank = {str(r): max(v for key, v in mean.items() if key[1] == r) for r in ranks}
    return Readout(k, rank, lam if k else 0.0, mean[k, rank, lam], mean[0, ranks[0], RIDGES[0]], len(rows),
                   len(folds), by_rank)
