"""Fit one global LUT directly to (original, graded) image pairs: the core of ``python -m img2lut.fit``
and the first stage of the default training recipe.

For a global look no CNN is needed: a single LUT tensor, started at the identity, is optimised with
Adam through :func:`lutkern.apply_lut` on random pixels drawn from all training pairs at every step
(cheap, and an unbiased estimate of the mean squared error over all pixels). Lattice points that no
pixel touches get no data gradient; the regularizers (smoothness, total variation, monotonicity) fill
them in from their covered neighbours. Weights and defaults were chosen on held-out photos: docs/fit.md.

LUTs follow the project convention ``(D,D,D,3)`` indexed ``lut[b, g, r, c]`` (red index fastest, the
``.cube`` row order); images are RGB float in [0, 1], ``(N,3,H,W)`` or a list of ``(3,H,W)``, or held
as codes (:class:`img2lut.codes.Codes`: the pixels drawn are then read from the codes where they lie,
memory-mapped from the pair cache, instead of a float copy of every pixel, 24 bytes each).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

import lutkern

from .codes import Codes
from .metrics import COVERED_WEIGHT, lattice_coverage, psnr_from_mse
from .model import lut_logits

PARAMETRIZATIONS = ("values", "logits")
# Regularizer weights of fit_lut and the CLI, chosen on held-out photos (docs/fit.md).
DEFAULT_WEIGHTS = {"smooth": 0.0, "tv": 1e-2, "mono": 1e-2}
# Pixels drawn per step at most (24 bytes each, with their targets).
MAX_BATCH_PIXELS = 1 << 24


@dataclass
class FitResult:
    """What :func:`fit_lut` found.

    lut: ``(D,D,D,3)`` float32 in [0, 1], ``lut[b, g, r, c]``, on the CPU (as coverage).
    coverage: ``(D,D,D)`` total interpolation weight each lattice point received from the training
        pixels (in pixels); 0 where no pixel's interpolation support reaches (None when not asked for).
    losses: mean squared error of the sampled pixels at each step (without the regularizers).
    seconds: wall time of the optimisation (pixel gathering and coverage excluded).
    """

    lut: torch.Tensor
    coverage: torch.Tensor | None
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def touched(self) -> int:
        """Lattice points that receive any data gradient."""
        return int((self.coverage > 0).sum())

    @property
    def covered(self) -> int:
        """Lattice points with at least ``COVERED_WEIGHT`` pixels of interpolation weight."""
        return int((self.coverage >= COVERED_WEIGHT).sum())

    def coverage_summary(self) -> str:
        total = self.coverage.numel()
        covered, touched = self.covered, self.touched
        return (f"data covers {covered}/{total} lattice points ({100 * covered / total:.1f}%) with >= "
                f"{COVERED_WEIGHT:g} pixel of weight; {touched} ({100 * touched / total:.1f}%) touched "
                "at all; the rest are filled in by the regularizers")


def _as_image_list(images, name: str) -> list[torch.Tensor]:
    """``(N,3,H,W)`` tensor, codes, or a sequence of ``(3,H,W)`` tensors -> list of float ``(3,H,W)``."""
    if isinstance(images, Codes):
        images = list(images)
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{name} must be (N,3,H,W) or a list of (3,H,W) images, "
                             f"got {tuple(images.shape)}")
        images = list(images)
    if not isinstance(images, Sequence) or isinstance(images, str):
        raise TypeError(f"{name} must be a tensor or a list of tensors, got {type(images).__name__}")
    if len(images) == 0:
        raise ValueError(f"{name} is empty")
    for i, im in enumerate(images):
        if not isinstance(im, torch.Tensor):
            raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {type(im).__name__}")
        if not im.is_floating_point():
            raise TypeError(f"{name}[{i}] must be a floating-point image in [0, 1], got dtype {im.dtype}")
        if im.dim() != 3 or im.shape[0] != 3:
            raise ValueError(f"{name}[{i}] must have shape (3,H,W), got {tuple(im.shape)}")
    return list(images)


def _pixel_source(inputs, targets) -> tuple[int, Callable[[torch.Tensor], torch.Tensor]]:
    """How many pixels the pairs hold, ``P``, and ``draw(idx)``: the pixels ``idx`` ``(B,)`` (numbered over
    the pairs in order, each image's pixels in row-major order) as ``(6,B)`` float32, input RGB then
    target RGB.

    Codes (:class:`img2lut.codes.Codes`) are read where they are, only the pixels drawn (from the pair
    cache's memory map: nothing is copied). Tensors and lists are gathered into one ``(P,6)`` float32
    pool (one row per pixel: drawing a random pixel is one contiguous read), on their device.
    """
    if isinstance(inputs, Codes) and isinstance(targets, Codes) and len(inputs) == len(targets) \
            and inputs.shape == targets.shape and len(inputs):
        return len(inputs) * inputs.shape[2:].numel(), \
            lambda idx: torch.cat([inputs.pixels(idx), targets.pixels(idx)])
    xs, ys = _as_image_list(inputs, "inputs"), _as_image_list(targets, "targets")
    if len(xs) != len(ys):
        raise ValueError(f"got {len(xs)} inputs but {len(ys)} targets")
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if x.shape != y.shape:
            raise ValueError(f"pair {i}: input {tuple(x.shape)} and target {tuple(y.shape)} differ in size")
    pool = torch.cat([torch.cat([x.float().reshape(3, -1), y.float().reshape(3, -1)]).T
                      for x, y in zip(xs, ys, strict=True)])
    return len(pool), lambda idx: pool.index_select(0, idx.to(pool.device)).T


def _apply_pixels(pixels: torch.Tensor, lut: torch.Tensor, interpolation: str, backend: str | None):
    """Apply ``lut`` to pixels ``(3,P)`` (viewed as a 1-pixel-high image); returns ``(3,P)``."""
    out = lutkern.apply_lut(pixels.unsqueeze(1), lut, interpolation=interpolation, backend=backend)
    return out.squeeze(1)


def _check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def check_fit_settings(*, lut_size: int, interpolation: str, smooth_weight: float, tv_weight: float,
                       mono_weight: float, steps: int, lr: float, batch_pixels: int,
                       init: torch.Tensor | None = None, parametrization: str = "values") -> torch.Tensor:
    """ValueError (TypeError for a wrong type) naming the first setting of :func:`fit_lut` that cannot
    work, before any pixel is touched; returns the start LUT ``(D,D,D,3)`` (a copy of ``init``, or the
    identity)."""
    if not isinstance(lut_size, int) or isinstance(lut_size, bool):
        raise ValueError(f"lut_size must be an int, got {lut_size!r}")
    lutkern.identity_lut(lut_size)  # validates the size range
    if interpolation not in lutkern.INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {lutkern.INTERPOLATIONS}, got {interpolation!r}")
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}")
    _check_positive_int("steps", steps)
    _check_positive_int("batch_pixels", batch_pixels)
    if batch_pixels > MAX_BATCH_PIXELS:
        raise ValueError(f"batch_pixels must be at most {MAX_BATCH_PIXELS}, got {batch_pixels}")
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if init is not None and not isinstance(init, torch.Tensor):
        raise TypeError(f"init must be a LUT tensor (D,D,D,3) or None, got {type(init).__name__}")
    start = lutkern.identity_lut(lut_size) if init is None else init.detach().float().cpu().clone()
    if start.shape != (lut_size, lut_size, lut_size, 3):
        raise ValueError(f"init must have shape {(lut_size,) * 3 + (3,)} (lut_size={lut_size}), "
                         f"got {tuple(start.shape)}")
    if not torch.isfinite(start).all():
        raise ValueError("init contains NaN or infinite values")
    lutkern.lut_regularizers(start, smooth=smooth_weight, tv=tv_weight, mono=mono_weight, backend="torch")
    return start


def fit_lut(
    inputs,
    targets,
    *,
    lut_size: int = 33,
    interpolation: str = "trilinear",
    smooth_weight: float = DEFAULT_WEIGHTS["smooth"],
    tv_weight: float = DEFAULT_WEIGHTS["tv"],
    mono_weight: float = DEFAULT_WEIGHTS["mono"],
    steps: int = 500,
    lr: float = 5e-2,
    batch_pixels: int = 1 << 16,
    seed: int = 0,
    init: torch.Tensor | None = None,
    parametrization: str = "values",
    backend: str | None = None,
    progress: bool = False,
    device: str | torch.device | None = None,
    coverage: bool = True,
) -> FitResult:
    """Fit one LUT ``(D,D,D,3)`` so that ``apply_lut(inputs[i], lut) ~= targets[i]`` for every pair.

    inputs, targets: ``(N,3,H,W)`` tensors, or equally long lists of ``(3,H,W)`` images whose sizes may
        differ between pairs (never within a pair); RGB float in [0, 1]; or :class:`img2lut.codes.Codes`.
        The fit runs on their device, or on ``device`` when given.
    lut_size: D. interpolation: any mode of :func:`lutkern.apply_lut` (the fitted LUT is meant to be
        applied with the same one).
    smooth_weight, tv_weight, mono_weight: weights of :func:`lutkern.smoothness`,
        :func:`lutkern.total_variation` and :func:`lutkern.monotonicity` added to the pixel MSE.
    steps, lr, batch_pixels: Adam steps, its learning rate (cosine-decayed to 5% of it), and the number
        of pixels drawn uniformly (with replacement) from all pairs at each step.
    seed: seeds the pixel sampling, so a fit is reproducible.
    init: starting LUT ``(D,D,D,3)``; the identity when None.
    parametrization: ``"values"`` optimises the lattice values directly (clamped to [0, 1] at the end);
        ``"logits"`` optimises logits behind a sigmoid, as the CNN does.
    backend: passed to :func:`lutkern.apply_lut`.
    progress: show a progress bar (rich).
    coverage: measure the lattice coverage of the inputs (False: ``FitResult.coverage`` is None).
    """
    start = check_fit_settings(lut_size=lut_size, interpolation=interpolation, smooth_weight=smooth_weight,
                               tv_weight=tv_weight, mono_weight=mono_weight, steps=steps, lr=lr,
                               batch_pixels=batch_pixels, init=init, parametrization=parametrization)
    weights = dict(smooth=smooth_weight, tv=tv_weight, mono=mono_weight)
    count, draw = _pixel_source(inputs, targets)
    if device is None:
        device = inputs.device if isinstance(inputs, torch.Tensor) else \
            inputs[0].device if isinstance(inputs, Sequence) else torch.device("cpu")
    counted = None
    if coverage:
        pixels = inputs if isinstance(inputs, Codes) else [x.reshape(3, -1) for x in _as_image_list(inputs,
                                                                                                  "inputs")]
        counted = lattice_coverage(pixels, lut_size, interpolation, backend).cpu()
    start = start.to(device)

    if parametrization == "logits":
        param = lut_logits(start).requires_grad_()
        to_lut = torch.sigmoid
    else:
        param = start.requires_grad_()
        to_lut = torch.nn.Identity()
    opt = torch.optim.Adam([param], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=0.05 * lr)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    t0 = time.perf_counter()
    with _progress_bar(progress, steps) as advance:
        for _ in range(steps):
            idx = torch.randint(count, (batch_pixels,), generator=gen)
            batch = draw(idx).to(device)  # (6, batch_pixels)
            lut = to_lut(param)
            mse = (_apply_pixels(batch[:3], lut, interpolation, backend) - batch[3:]).square().mean()
            loss = mse + lutkern.lut_regularizers(lut, **weights, backend=backend)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(mse.item())
            advance(losses[-1])
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        lut = to_lut(param).clamp(0, 1)
    return FitResult(lut=lut.detach().cpu(), coverage=counted, losses=losses, seconds=seconds)


@contextlib.contextmanager
def _progress_bar(enabled: bool, steps: int):
    """Yield ``advance(mse)``: a rich progress bar showing the running PSNR, or a no-op."""
    if not enabled:
        yield lambda mse: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("fit"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[psnr]}"))
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("fit", total=steps, psnr="")

        def advance(mse: float) -> None:
            bar.update(task, advance=1, psnr=f"sampled pixels {psnr_from_mse(mse):.2f} dB")

        yield advance


@torch.no_grad()
def image_psnr(inputs, targets, lut: torch.Tensor, interpolation: str = "trilinear",
               backend: str | None = None) -> torch.Tensor:
    """PSNR (dB) ``(N,)`` of ``apply_lut(inputs[i], lut)`` against ``targets[i]``, image by image (inf when
    exact); images held as codes are made float one at a time."""
    if isinstance(inputs, Codes) and isinstance(targets, Codes):
        xs, ys = inputs, targets
    else:
        xs, ys = _as_image_list(inputs, "inputs"), _as_image_list(targets, "targets")
    if len(xs) != len(ys):
        raise ValueError(f"got {len(xs)} inputs but {len(ys)} targets")
    out = []
    for x, y in zip(xs, ys, strict=True):
        pred = lutkern.apply_lut(x.float(), lut, interpolation=interpolation, backend=backend)
        out.append(psnr_from_mse(float((pred - y.float()).square().mean())))
    return torch.tensor(out)
