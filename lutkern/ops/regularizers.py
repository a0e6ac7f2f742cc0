"""Fused LUT regularizers in Triton: smoothness, total variation and monotonicity in one pass.

``lut`` is ``(B,D,D,D,3)`` contiguous, ``lut[n, b, g, r, c]``; element ``e = 3*((b*D + g)*D + r) + c`` of
LUT ``n``, so the neighbour along red/green/blue is ``e + 3``, ``e + 3*D``, ``e + 3*D*D``. For a difference
``d = L[p + e_a] - L[p]`` along axis ``a`` (p's index ``i`` on that axis, ``i < D-1``):

    smoothness     |d| / N + [p in the [:-1,:-1,:-1] sub-cube] * d^2 / 2 / S
    total variation  w(i) * d^2 / N,   w = 2 for i in {0, D-2}, else 1
    monotonicity   relu(-d) / N

summed over p and the three axes, with ``N = B*3*D*D*(D-1)`` and ``S = B*3*(D-1)**3`` (see
:mod:`lutkern.reference.regularizers` for the published formulas these come from).

Forward: each program reads its block of LUT elements and their three upper neighbours and writes its
share of the three terms; torch adds the shares, so the result is deterministic. Backward: each program
gathers, for its own elements, the derivatives of the (up to) six differences an element takes part in;
every gradient element is written once, so there are no atomics either. fp16/bf16/fp32 LUTs are computed
in fp32, fp64 in fp64; outputs have the LUT's dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._backend import interpreter_enabled


@triton.jit
def _upper_difference(base, offs, x, idx, stride, D, mask):
    """``L[p + e_a] - L[p]`` for the elements at ``offs`` (0 where there is no upper neighbour)."""
    has = mask & (idx < D - 1)
    y = tl.load(base + offs + stride, mask=has, other=0.0).to(x.dtype)
    return tl.where(has, y - x, 0.0)


@triton.jit
def _regularizers_fwd_kernel(
    lut_ptr,  # (B, D, D, D, 3) contiguous, any float dtype
    part_ptr,  # (B, num_blocks, 3) this program's share of each term; fp32 (fp64 for an fp64 LUT)
    D,  # lattice size
    numel,  # elements per LUT, 3*D^3 (< 2^31 since D <= 256)
    n_diff,  # N: differences along one axis, B*3*D*D*(D-1)
    n_sub,  # S: differences along one axis inside the [:-1,:-1,:-1] sub-cube, B*3*(D-1)^3
    BLOCK: tl.constexpr,  # elements per program
):
    pid = tl.program_id(0)
    n = tl.program_id(1)
    base = lut_ptr + n.to(tl.int64) * numel
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    x = tl.load(base + offs, mask=mask, other=0.0).to(part_ptr.dtype.element_ty)
    p = offs // 3
    r = p % D
    g = (p // D) % D
    b = p // (D * D)
    in_sub = (r < D - 1) & (g < D - 1) & (b < D - 1)

    d_r = _upper_difference(base, offs, x, r, 3, D, mask)
    d_g = _upper_difference(base, offs, x, g, 3 * D, D, mask)
    d_b = _upper_difference(base, offs, x, b, 3 * D * D, D, mask)

    abs_sum = tl.abs(d_r) + tl.abs(d_g) + tl.abs(d_b)
    sq_r, sq_g, sq_b = d_r * d_r, d_g * d_g, d_b * d_b
    sub_sum = tl.where(in_sub, sq_r + sq_g + sq_b, 0.0)
    tv_sum = (
        tl.where((r == 0) | (r == D - 2), 2.0, 1.0) * sq_r
        + tl.where((g == 0) | (g == D - 2), 2.0, 1.0) * sq_g
        + tl.where((b == 0) | (b == D - 2), 2.0, 1.0) * sq_b
    )
    mono_sum = tl.maximum(-d_r, 0.0) + tl.maximum(-d_g, 0.0) + tl.maximum(-d_b, 0.0)

    # Scaled here rather than after the reduction, so that the terms need no further torch launches.
    out = part_ptr + (n * tl.num_programs(0) + pid) * 3
    tl.store(out, tl.sum(abs_sum, axis=0) / n_diff + 0.5 * tl.sum(sub_sum, axis=0) / n_sub)
    tl.store(out + 1, tl.sum(tv_sum, axis=0) / n_diff)
    tl.store(out + 2, tl.sum(mono_sum, axis=0) / n_diff)


@triton.jit
def _difference_grad(d, in_sub, heavy, c_abs, c_sub, c_tv, c_mono):
    """d(weighted terms)/d(difference d). ``heavy``: the difference is on a TV slice of weight 2.
    Zero for d == 0 (the subgradient torch uses for |.| and relu), so missing neighbours add nothing."""
    sign = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0))
    tv_weight = tl.where(heavy, 2.0, 1.0)
    mono = tl.where(d < 0, c_mono, 0.0)
    return c_abs * sign + tl.where(in_sub, c_sub * d, 0.0) + c_tv * tv_weight * d - mono


@triton.jit
def _axis_grad(base, offs, x, idx, stride, D, mask, up_in_sub, down_in_sub, c_abs, c_sub, c_tv, c_mono):
    """Gradient at L[q] from the two differences along one axis: ``L[q+e] - L[q]`` (-) and
    ``L[q] - L[q-e]`` (+). ``up_in_sub``/``down_in_sub``: the difference's start p is in the sub-cube."""
    d_up = _upper_difference(base, offs, x, idx, stride, D, mask)
    has_down = mask & (idx > 0)
    z = tl.load(base + offs - stride, mask=has_down, other=0.0).to(x.dtype)
    d_down = tl.where(has_down, x - z, 0.0)
    # Start index of the up difference is idx, of the down difference idx - 1.
    up = _difference_grad(d_up, up_in_sub, (idx == 0) | (idx == D - 2), c_abs, c_sub, c_tv, c_mono)
    down = _difference_grad(d_down, down_in_sub, (idx == 1) | (idx == D - 1), c_abs, c_sub, c_tv, c_mono)
    return down - up


@triton.jit
def _regularizers_bwd_kernel(
    lut_ptr,  # (B, D, D, D, 3) contiguous, any float dtype
    gterms_ptr,  # (3,) upstream gradient of [smoothness, total_variation, monotonicity], any float dtype
    gterms_stride,  # its stride (0 when autograd expanded a scalar gradient)
    grad_ptr,  # (B, D, D, D, 3) output, LUT dtype
    D,  # lattice size
    numel,  # elements per LUT, 3*D^3
    n_diff,  # N, as in the forward kernel
    n_sub,  # S, as in the forward kernel
    ACC: tl.constexpr,  # compute dtype: fp32, or fp64 for an fp64 LUT
    BLOCK: tl.constexpr,  # elements per program
):
    pid = tl.program_id(0)
    n = tl.program_id(1)
    base = lut_ptr + n.to(tl.int64) * numel
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    x = tl.load(base + offs, mask=mask, other=0.0).to(ACC)
    g_smooth = tl.load(gterms_ptr).to(ACC)
    g_tv = tl.load(gterms_ptr + gterms_stride).to(ACC)
    g_mono = tl.load(gterms_ptr + 2 * gterms_stride).to(ACC)
    # d(d^2/2)/dd = d and d(w d^2)/dd = 2 w d: the 1/2 and the 2 are folded in here.
    c_abs = g_smooth / n_diff
    c_sub = g_smooth / n_sub
    c_tv = 2 * g_tv / n_diff
    c_mono = g_mono / n_diff
    p = offs // 3
    r = p % D
    g = (p // D) % D
    b = p // (D * D)
    r_in, g_in, b_in = r < D - 1, g < D - 1, b < D - 1
    in_sub = r_in & g_in & b_in

    grad = _axis_grad(base, offs, x, r, 3, D, mask, in_sub, g_in & b_in, c_abs, c_sub, c_tv, c_mono)
    grad += _axis_grad(base, offs, x, g, 3 * D, D, mask, in_sub, r_in & b_in, c_abs, c_sub, c_tv, c_mono)
    grad += _axis_grad(base, offs, x, b, 3 * D * D, D, mask, in_sub, r_in & g_in, c_abs, c_sub, c_tv, c_mono)
    tl.store(grad_ptr + n.to(tl.int64) * numel + offs, grad.to(grad_ptr.dtype.element_ty), mask=mask)


def _launch_config(numel: int) -> tuple[int, int]:
    """(BLOCK, num_warps). The interpreter pays per program, so it gets few large blocks."""
    if interpreter_enabled():
        return min(triton.next_power_of_2(numel), 1 << 16), 4
    return 2048, 8


def _sizes(lut: torch.Tensor) -> tuple[int, int, int, int, int]:
    """(B, D, elements per LUT, N, S) of ``lut`` ``(B,D,D,D,3)``; N and S as in the kernels."""
    n, d = lut.shape[0], lut.shape[1]
    return n, d, 3 * d**3, n * 3 * d * d * (d - 1), n * 3 * (d - 1) ** 3


def regularizer_terms_forward(lut: torch.Tensor) -> torch.Tensor:
    """``[smoothness, total_variation, monotonicity]`` of a contiguous ``lut`` ``(B,D,D,D,3)``."""
    n, d, numel, n_diff, n_sub = _sizes(lut)
    block, num_warps = _launch_config(numel)
    grid = (triton.cdiv(numel, block), n)
    acc = torch.float64 if lut.dtype == torch.float64 else torch.float32
    partials = torch.empty(n, grid[0], 3, dtype=acc, device=lut.device)
    _regularizers_fwd_kernel[grid](lut, partials, d, numel, n_diff, n_sub, BLOCK=block, num_warps=num_warps)
    return partials.sum(dim=(0, 1)).to(lut.dtype)


def regularizer_terms_backward(lut: torch.Tensor, grad_terms: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. a contiguous ``lut`` of ``grad_terms . [smoothness, total_variation, monotonicity]``
    (``grad_terms``: ``(3,)``, any stride)."""
    n, d, numel, n_diff, n_sub = _sizes(lut)
    block, num_warps = _launch_config(numel)
    grid = (triton.cdiv(numel, block), n)
    acc = tl.float64 if lut.dtype == torch.float64 else tl.float32
    grad = torch.empty_like(lut)
    _regularizers_bwd_kernel[grid](
        lut, grad_terms, grad_terms.stride(0), grad, d, numel, n_diff, n_sub, ACC=acc, BLOCK=block,
        num_warps=num_warps,
    )
    return grad


class _RegularizerTerms(torch.autograd.Function):
    """``lut (B,D,D,D,3) -> [smoothness, total_variation, monotonicity]`` as a ``(3,)`` tensor."""

    @staticmethod
    def forward(ctx, lut: torch.Tensor) -> torch.Tensor:
        lut = lut.contiguous()
        ctx.save_for_backward(lut)
        return regularizer_terms_forward(lut)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_terms: torch.Tensor) -> torch.Tensor:
        (lut,) = ctx.saved_tensors
        return regularizer_terms_backward(lut, grad_terms)


def regularizer_terms_triton(lut: torch.Tensor) -> torch.Tensor:
    """``[smoothness, total_variation, monotonicity]`` of ``lut`` ``(B,D,D,D,3)``; differentiable."""
    return _RegularizerTerms.apply(lut)
