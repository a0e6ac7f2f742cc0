"""LUT regularizers in plain torch ops, fused: the torch backend of :mod:`lutkern.regularizers`.

The three terms of :mod:`lutkern.reference.regularizers` (the published formulas) from one neighbour
difference per axis, and a hand-written backward, with the same subgradient choices at ties as torch and
the Triton kernels (``d|x|/dx = 0`` and ``d relu(x)/dx = 0`` at ``x = 0``). ``lut`` is ``(B,D,D,D,3)``,
``lut[n, b, g, r, c]``; means run over every element including the batch.
"""

from __future__ import annotations

import torch


# Sums by torch.sum, whose CPU and CUDA reductions are pairwise (cascaded), like the means of the unfused
# formulas: as accurate as them (tested). torch.linalg.vector_norm accumulates float32 less accurately
# (1e-5 relative on 4 LUTs of 33^3), and float64 accumulation would cost 3x the time of the sums.
def _sum_abs(t: torch.Tensor) -> torch.Tensor:
    return t.abs().sum().double()


def _sum_sq(t: torch.Tensor) -> torch.Tensor:
    return t.square().sum().double()


def _sizes(x: torch.Tensor) -> tuple[int, int, int]:
    """(D, N, S): lattice size, differences along one axis, and those in the [:-1,:-1,:-1] sub-cube."""
    n, d = x.shape[0], x.shape[1]
    return d, n * 3 * d * d * (d - 1), n * 3 * (d - 1) ** 3


def _tv_edge_slices(delta: torch.Tensor, axis: int) -> list[torch.Tensor]:
    """The difference slices of TV weight 2 (first and last; a single one for D=2) along ``axis``."""
    last = delta.shape[axis] - 1
    return [delta.narrow(axis, i, 1) for i in sorted({0, last})]


class _RegularizerTermsTorch(torch.autograd.Function):
    """``lut (B,D,D,D,3) -> [smoothness, total_variation, monotonicity]``, with a hand-written backward
    that keeps only ``lut`` (autograd through the formulas would keep a dozen LUT-sized temporaries)."""

    @staticmethod
    def forward(ctx, lut: torch.Tensor, which: tuple[bool, bool, bool]) -> torch.Tensor:
        x = lut if lut.dtype in (torch.float32, torch.float64) else lut.float()
        d, n_diff, n_sub = _sizes(x)
        smooth, tv, mono = (x.new_zeros((), dtype=torch.float64) for _ in range(3))
        for axis in (1, 2, 3):  # b, g, r
            delta = x.diff(dim=axis)  # L[i+1] - L[i]
            if which[0]:
                # torch.var of the seed's 2-sample stacks (unbiased) is half the squared difference.
                sub = delta[:, : d - 1, : d - 1, : d - 1]
                smooth = smooth + _sum_abs(delta) / n_diff + 0.5 * _sum_sq(sub) / n_sub
            if which[1]:
                tv = tv + (_sum_sq(delta) + sum(_sum_sq(s) for s in _tv_edge_slices(delta, axis))) / n_diff
            if which[2]:
                mono = mono + _sum_abs(delta.clamp(max=0)) / n_diff
        ctx.which = which
        ctx.save_for_backward(lut)
        return torch.stack([smooth, tv, mono]).to(lut.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_terms: torch.Tensor):
        (lut,) = ctx.saved_tensors
        which = ctx.which
        x = lut if lut.dtype in (torch.float32, torch.float64) else lut.float()
        d, n_diff, n_sub = _sizes(x)
        g = grad_terms.to(x.dtype)
        grad = torch.zeros_like(x)
        for axis in (1, 2, 3):
            delta = x.diff(dim=axis)
            # f = d(weighted terms)/d(delta); subgradients 0 at delta == 0, as torch's abs and relu.
            f = torch.zeros_like(delta)
            if which[0]:
                f.add_(delta.sign().mul_(g[0] / n_diff))
                f[:, : d - 1, : d - 1, : d - 1].add_(delta[:, : d - 1, : d - 1, : d - 1] * (g[0] / n_sub))
            if which[1]:
                f.add_(delta * (2 * g[1] / n_diff))
                for s_f, s_delta in zip(_tv_edge_slices(f, axis), _tv_edge_slices(delta, axis), strict=True):
                    s_f.add_(s_delta * (2 * g[1] / n_diff))
            if which[2]:
                f.sub_((delta < 0).to(x.dtype).mul_(g[2] / n_diff))
            grad.narrow(axis, 1, d - 1).add_(f)
            grad.narrow(axis, 0, d - 1).sub_(f)
        return grad.to(lut.dtype), None


def regularizer_terms_torch(lut: torch.Tensor, which: tuple[bool, bool, bool] = (True,) * 3) -> torch.Tensor:
    """``[smoothness, total_variation, monotonicity]`` of ``lut`` ``(B,D,D,D,3)`` as a ``(3,)`` tensor.

    Terms not selected by ``which`` are 0 and cost nothing. Half-precision LUTs are computed in float32,
    with pairwise sums (as accurate as the unfused formulas' means); the result has ``lut``'s dtype.
    Differentiable once (hand-written backward).
    """
    return _RegularizerTermsTorch.apply(lut, tuple(which))
