"""Per-channel histograms of image batches at full code resolution: what a photo's levels, tails and
extremes are read from (auto levels, clipping points, quantiles).

``channel_histogram(images, bins)`` counts, for every image and channel, how many pixels fall in each of
``bins`` equal bins over [0, 1]. The bins are centred on the codes of a ``bins``-level encoding: bin
``k`` holds the values that round to ``k / (bins - 1)``, so an 8-bit image read as ``code / 255`` lands
exactly one code per bin with ``bins=256`` (and a 16-bit one with ``bins=65536``). Values outside [0, 1]
count in the first or last bin (clamped, as :func:`lutkern.apply_lut` clamps them to the LUT's edge);
NaN pixels are not counted. Integer images (uint8, or int16/int32 codes) are counted by their code,
which must fit ``bins``.

Backends as for :func:`lutkern.apply_lut` (argument > ``LUTKERN_BACKEND`` > automatic): a Triton kernel
(:mod:`lutkern.ops.histogram_triton`), automatic on CUDA tensors; the torch backend, which on CPU tensors
runs a compiled C loop (:mod:`lutkern.ops.histogram_cpu`; ``LUTKERN_NATIVE=0`` or no C compiler: the torch
ops of :mod:`lutkern.ops.histogram_torch`). All give the same counts. Kernels are imported and the C loop
built on first use.
"""

from __future__ import annotations

import torch

from ._backend import resolve_backend
from .ops.histogram_cpu import channel_histogram_cpu, native_available
from .ops.histogram_torch import channel_histogram_torch

MAX_BINS = 1 << 16
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_INT_DTYPES = (torch.uint8, torch.int16, torch.int32, torch.int64)


def _check(images: torch.Tensor, bins: int) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dtype not in _FLOAT_DTYPES + _INT_DTYPES:
        raise TypeError(f"images dtype must be a float or an integer code type, got {images.dtype}")
    if images.dim() not in (3, 4):
        raise ValueError(f"images must have shape (C,H,W) or (B,C,H,W), got {tuple(images.shape)}")
    if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= MAX_BINS:
        raise ValueError(f"bins must be an int in [2, {MAX_BINS}], got {bins!r}")
    if images.dtype == torch.uint8 and bins != 256:
        raise ValueError(f"uint8 images hold 256 codes: bins must be 256, got {bins}")


def channel_histogram(images: torch.Tensor, bins: int = 256, *, backend: str | None = None) -> torch.Tensor:
    """Per-channel pixel counts ``(B,C,bins)`` int64 of ``images`` ``(B,C,H,W)`` (``(C,bins)`` for
    ``(C,H,W)``).

    Float images: value ``v`` (clamped to [0, 1]) counts in bin ``round(v * (bins - 1))`` (half to even);
    NaN is not counted, so a channel's counts sum to its number of non-NaN pixels. Integer images: code
    ``k`` counts in bin ``k``; a code outside ``[0, bins)`` is a ValueError.
    backend: None (automatic), ``"triton"`` or ``"torch"`` (see the module docstring); every backend gives
    the same counts.
    """
    _check(images, bins)
    batch = images.unsqueeze(0) if images.dim() == 3 else images
    which = resolve_backend(backend, images.device)
    # uint8 needs no look: it holds 256 codes, and takes bins=256 only.
    if images.dtype != torch.uint8 and not images.is_floating_point() and batch.numel():
        low, high = (int(t) for t in torch.aminmax(batch))
        if low < 0 or high >= bins:
            raise ValueError(f"integer codes must lie in [0, {bins}), got values from {low} to {high}")
    if batch.numel() == 0:
        counts = torch.zeros(*batch.shape[:2], bins, dtype=torch.int64, device=images.device)
    elif which == "triton":
        from .ops.histogram_triton import channel_histogram_triton

        counts = channel_histogram_triton(batch, bins)
    elif images.device.type == "cpu" and native_available():
        counts = channel_histogram_cpu(batch, bins)
    else:
        counts = channel_histogram_torch(batch, bins)
    return counts.squeeze(0) if images.dim() == 3 else counts
