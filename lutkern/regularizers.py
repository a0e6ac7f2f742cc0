"""LUT regularizers: smoothness (the seed experiment's term), total variation and monotonicity (TPAMI 3D-LUT).

Each takes ``lut`` ``(B,D,D,D,3)`` or ``(D,D,D,3)`` (``lut[..., b, g, r, c]``, 2 <= D <= 256) and returns a
scalar tensor of ``lut``'s dtype, differentiable with respect to ``lut``. Means run over every element
including the batch, so a batch gives the average of the per-LUT values. Backends as for
:func:`lutkern.apply_lut`: Triton kernels (one fused pass for all three terms) or the torch fallback; fp16,
bf16 and fp32 LUTs are computed in fp32, fp64 in fp64, on both, with sums as accurate as the unfused
formulas' means (pairwise in torch, fp64 accumulation in Triton).
"""

from __future__ import annotations

import math
import numbers

import torch

from ._backend import resolve_backend
from .functional import check_lut
from .ops.regularizers_torch import regularizer_terms_torch

_WEIGHT_NAMES = ("smooth", "tv", "mono")


def _terms(lut: torch.Tensor, backend: str | None, which: tuple[bool, bool, bool]) -> torch.Tensor:
    """``[smoothness, total_variation, monotonicity]`` as a ``(3,)`` tensor; unselected terms may be 0."""
    check_lut(lut)
    lut5 = lut.unsqueeze(0) if lut.dim() == 4 else lut
    if resolve_backend(backend, lut.device) == "triton":
        from .ops.regularizers_triton import regularizer_terms_triton

        return regularizer_terms_triton(lut5)  # all three cost one pass
    return regularizer_terms_torch(lut5, which)


def smoothness(lut: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    """The seed's smoothness term: for each lattice axis, mean ``|L[i+1] - L[i]|`` plus the mean of the
    unbiased variance of ``(L[i], L[i+1])``, i.e. ``(L[i+1] - L[i])^2 / 2``, on the ``[:-1,:-1,:-1]``
    sub-cube."""
    return _terms(lut, backend, (True, False, False))[0]


def total_variation(lut: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    """TPAMI 3D-LUT TV: for each lattice axis, mean of ``w_i (L[i+1] - L[i])^2`` with ``w_i = 2`` on the first
    and last difference slices (``i = 0`` and ``i = D-2``), 1 elsewhere; summed over the axes."""
    return _terms(lut, backend, (False, True, False))[1]


def monotonicity(lut: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    """TPAMI 3D-LUT monotonicity: for each lattice axis, mean of ``relu(L[i] - L[i+1])`` over all output
    channels; summed over the axes. 0 exactly when every channel is non-decreasing along every axis."""
    return _terms(lut, backend, (False, False, True))[2]


def _check_weight(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} weight must be a real number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} weight must be finite and >= 0, got {value!r}")
    return float(value)


def lut_regularizers(
    lut: torch.Tensor,
    *,
    smooth: float = 0.0,
    tv: float = 0.0,
    mono: float = 0.0,
    return_terms: bool = False,
    backend: str | None = None,
):
    """``smooth * smoothness(lut) + tv * total_variation(lut) + mono * monotonicity(lut)`` in one pass.

    Weights are real numbers >= 0. The Triton kernels produce all three terms from one read of the LUT;
    the torch fallback computes only the terms with a nonzero weight. With every weight 0 the result is a
    constant 0. ``return_terms=True`` returns ``(total, terms)`` where ``terms`` is the differentiable
    ``(3,)`` tensor ``[smoothness, total_variation, monotonicity]`` (all three computed, e.g. for logging).
    """
    weights = tuple(_check_weight(n, w) for n, w in zip(_WEIGHT_NAMES, (smooth, tv, mono), strict=True))
    which = tuple(w != 0 or return_terms for w in weights)
    if not any(which):
        check_lut(lut)
        resolve_backend(backend, lut.device)
        return lut.new_zeros(())
    terms = _terms(lut, backend, which)
    total = sum((w * terms[k] for k, w in enumerate(weights) if w != 0), terms.new_zeros(()))
    return (total, terms) if return_terms else total
