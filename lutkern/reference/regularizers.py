"""Plain-torch LUT regularizers: literal transcriptions (the test oracles) and the fused fallback.

``lut`` is ``(B,D,D,D,3)`` indexed ``lut[n, b, g, r, c]`` (red index fastest, the ``.cube`` row order),
D >= 2. Every "mean" is over all elements including the batch, as ``Tensor.mean()`` on a batched tensor
does, so the value for a batch is the average of the per-LUT values.

The oracles copy the published code line by line in its own layout, channel first
``lut.permute(0, 4, 1, 2, 3) -> (B, 3, b, g, r)``:

- :func:`smoothness_reference`: ``smoothness_regularization`` of the seed notebook without its
  ``lambda_smooth`` factor. The notebook's ``diff_z`` line reads ``lut[:, :, :, :, 1:] - lut[:, :, :, :-1]``,
  whose second operand slices the wrong axis (it only broadcasts for D=2); the comment and the two
  other lines show the intent, the neighbour difference along the last axis, which is what is used here.
- :func:`total_variation_reference`, :func:`monotonicity_reference`: ``TV_3D.forward`` of
  Zeng et al., "Learning Image-adaptive 3D Lookup Tables for High Performance Photo Enhancement in
  Real-time" (TPAMI 2020), whose ``LUT`` is ``(3, b, g, r)`` (file line ``b*D*D + g*D + r``), i.e. our
  layout with the channel moved first; ``dif_r`` is along the red (last) axis.

:func:`regularizer_terms_torch` is the fallback used when Triton cannot run: the same three values from
one neighbour difference per axis and a hand-written backward, with the same subgradient choices at ties
as torch and the Triton kernels (``d|x|/dx = 0`` and ``d relu(x)/dx = 0`` at ``x = 0``).
"""

from __future__ import annotations

import torch


def smoothness_reference(lut: torch.Tensor) -> torch.Tensor:
    """The seed's smoothness term (no ``lambda_smooth``) of ``lut`` ``(B,D,D,D,3)``; scalar."""
    lut = lut.permute(0, 4, 1, 2, 3)
    diff_x = torch.abs(lut[:, :, 1:, :, :] - lut[:, :, :-1, :, :])
    diff_y = torch.abs(lut[:, :, :, 1:, :] - lut[:, :, :, :-1, :])
    diff_z = torch.abs(lut[:, :, :, :, 1:] - lut[:, :, :, :, :-1])
    local_var_x = torch.var(torch.stack([lut[:, :, :-1, :-1, :-1], lut[:, :, 1:, :-1, :-1]], dim=-1), dim=-1)
    local_var_y = torch.var(torch.stack([lut[:, :, :-1, :-1, :-1], lut[:, :, :-1, 1:, :-1]], dim=-1), dim=-1)
    local_var_z = torch.var(torch.stack([lut[:, :, :-1, :-1, :-1], lut[:, :, :-1, :-1, 1:]], dim=-1), dim=-1)
    return (
        diff_x.mean() + diff_y.mean() + diff_z.mean()
        + local_var_x.mean() + local_var_y.mean() + local_var_z.mean()
    )


def _tpami_differences(lut: torch.Tensor):
    """``dif_r, dif_g, dif_b`` of ``TV_3D.forward`` (``L[i] - L[i+1]``) and the matching TV weights."""
    lut = lut.permute(0, 4, 1, 2, 3)
    dim = lut.shape[-1]
    weight_r = torch.ones(3, dim, dim, dim - 1, dtype=lut.dtype, device=lut.device)
    weight_r[:, :, :, (0, dim - 2)] *= 2.0
    weight_g = torch.ones(3, dim, dim - 1, dim, dtype=lut.dtype, device=lut.device)
    weight_g[:, :, (0, dim - 2), :] *= 2.0
    weight_b = torch.ones(3, dim - 1, dim, dim, dtype=lut.dtype, device=lut.device)
    weight_b[:, (0, dim - 2), :, :] *= 2.0
    dif_r = lut[:, :, :, :, :-1] - lut[:, :, :, :, 1:]
    dif_g = lut[:, :, :, :-1, :] - lut[:, :, :, 1:, :]
    dif_b = lut[:, :, :-1, :, :] - lut[:, :, 1:, :, :]
    return (dif_r, dif_g, dif_b), (weight_r, weight_g, weight_b)


def total_variation_reference(lut: torch.Tensor) -> torch.Tensor:
    """TPAMI 3D-LUT total variation of ``lut`` ``(B,D,D,D,3)``; scalar."""
    (dif_r, dif_g, dif_b), (weight_r, weight_g, weight_b) = _tpami_differences(lut)
    return (
        torch.mean(torch.mul(dif_r**2, weight_r))
        + torch.mean(torch.mul(dif_g**2, weight_g))
        + torch.mean(torch.mul(dif_b**2, weight_b))
    )


def monotonicity_reference(lut: torch.Tensor) -> torch.Tensor:
    """TPAMI 3D-LUT monotonicity term of ``lut`` ``(B,D,D,D,3)``; scalar."""
    (dif_r, dif_g, dif_b), _ = _tpami_differences(lut)
    relu = torch.nn.functional.relu
    return torch.mean(relu(dif_r)) + torch.mean(relu(dif_g)) + torch.mean(relu(dif_b))


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
