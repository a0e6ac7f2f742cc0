"""Fused LUT regularizers in Triton: smoothness, total variation and monotonicity in one pass.

``lut`` is ``(B,D,D,D,3)`` contiguous, ``lut[n, b, g, r, c]``, seen as a matrix of ``B*D*D`` rows
(``row = (n*D + b)*D + g``) of ``3*D`` elements (``col = 3*r + c``): the neighbour along red is ``col + 3``,
along green the next row, along blue ``D`` rows further. Programs take tiles of whole rows, so the lattice
indices come from one division per row plus ``col // 3`` (a constant divisor), not from runtime
divisions per element. For a difference ``d = L[p + e_a] - L[p]`` along axis ``a`` (p's index ``i`` on
that axis, ``i < D-1``):

    smoothness       |d| / N + [p in the [:-1,:-1,:-1] sub-cube] * d^2 / 2 / S
    total variation  w(i) * d^2 / N,   w = 2 for i in {0, D-2}, else 1
    monotonicity     relu(-d) / N

summed over p and the three axes, with ``N = B*3*D*D*(D-1)`` and ``S = B*3*(D-1)**3`` (see
:mod:`lutkern.reference.regularizers` for the published formulas these come from).

Forward: each program reads its tile and the tile's three upper neighbours and writes its share of the
three terms; torch adds the shares, so the result is deterministic. Backward: each program gathers, for
its own elements, the derivatives of the (up to) six differences an element takes part in; every gradient
element is written once, so there are no atomics either. fp16/bf16/fp32 LUTs are computed in fp32, fp64
in fp64, and the forward's sums accumulate in fp64; outputs have the LUT's dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# (elements per tile, warps). The interpreter pays per program, so it gets few large tiles.
TILE_GPU = (4096, 8)
TILE_INTERPRETER = (1 << 16, 4)


@triton.jit
def _tile(D, n_rows, ROWS: tl.constexpr, COLS: tl.constexpr):
    """Element offsets ``(ROWS, COLS)`` (int64), their mask, and the lattice indices r ``(1, COLS)``,
    g and b ``(ROWS, 1)`` of this program's rows."""
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, COLS)
    mask = (rows < n_rows)[:, None] & (cols < 3 * D)[None, :]
    offs = rows.to(tl.int64)[:, None] * (3 * D) + cols[None, :]
    r = (cols // 3)[None, :]
    g = (rows % D)[:, None]
    b = ((rows // D) % D)[:, None]
    return offs, mask, r, g, b


@triton.jit
def _upper_difference(lut_ptr, offs, x, idx, stride, D, mask):
    """``L[p + e_a] - L[p]`` for the elements at ``offs`` (0 where there is no upper neighbour)."""
    has = mask & (idx < D - 1)
    y = tl.load(lut_ptr + offs + stride, mask=has, other=0.0).to(x.dtype)
    return tl.where(has, y - x, 0.0)


@triton.jit
def _total(x):
    """Sum of a tile, accumulated in fp64: an fp32 tree over tens of thousands of elements would be
    less accurate than the unfused formulas' float32 means."""
    return tl.sum(tl.sum(x.to(tl.float64), axis=1), axis=0)


# The counts only feed the row mask and divisions: specialising on their divisibility would only
# multiply compilations (one per batch size).
@triton.jit(do_not_specialize=["n_rows", "n_diff", "n_sub"])
def _regularizers_fwd_kernel(
    lut_ptr,  # (B, D, D, D, 3) contiguous, any float dtype
    part_ptr,  # (num_programs, 3) fp64: this program's share of each term
    D,  # lattice size
    n_rows,  # B*D*D rows of 3*D elements
    n_diff,  # N: differences along one axis, B*3*D*D*(D-1)
    n_sub,  # S: differences along one axis inside the [:-1,:-1,:-1] sub-cube, B*3*(D-1)^3
    ACC: tl.constexpr,  # compute dtype of the differences: fp32, or fp64 for an fp64 LUT
    ROWS: tl.constexpr,  # rows per program
    COLS: tl.constexpr,  # next power of 2 >= 3*D
):
    offs, mask, r, g, b = _tile(D, n_rows, ROWS, COLS)
    x = tl.load(lut_ptr + offs, mask=mask, other=0.0).to(ACC)
    d_r = _upper_difference(lut_ptr, offs, x, r, 3, D, mask)
    d_g = _upper_difference(lut_ptr, offs, x, g, 3 * D, D, mask)
    d_b = _upper_difference(lut_ptr, offs, x, b, 3 * D * D, D, mask)

    abs_sum = tl.abs(d_r) + tl.abs(d_g) + tl.abs(d_b)
    sq_r, sq_g, sq_b = d_r * d_r, d_g * d_g, d_b * d_b
    in_sub = (r < D - 1) & (g < D - 1) & (b < D - 1)
    sub_sum = tl.where(in_sub, sq_r + sq_g + sq_b, 0.0)
    tv_sum = (
        tl.where((r == 0) | (r == D - 2), 2.0, 1.0) * sq_r
        + tl.where((g == 0) | (g == D - 2), 2.0, 1.0) * sq_g
        + tl.where((b == 0) | (b == D - 2), 2.0, 1.0) * sq_b
    )
    mono_sum = tl.maximum(-d_r, 0.0) + tl.maximum(-d_g, 0.0) + tl.maximum(-d_b, 0.0)

    # Scaled here rather than after the reduction, so that the terms need no further torch launches.
    out = part_ptr + tl.program_id(0) * 3
    tl.store(out, _total(abs_sum) / n_diff + 0.5 * _total(sub_sum) / n_sub)
    tl.store(out + 1, _total(tv_sum) / n_diff)
    tl.store(out + 2, _total(mono_sum) / n_diff)


@triton.jit
def _difference_grad(d, in_sub, heavy, c_abs, c_sub, c_tv, c_mono):
    """d(weighted terms)/d(difference d). ``heavy``: the difference is on a TV slice of weight 2.
    Zero for d == 0 (the subgradient torch uses for |.| and relu), so missing neighbours add nothing."""
    sign = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0))
    tv_weight = tl.where(heavy, 2.0, 1.0)
    mono = tl.where(d < 0, c_mono, 0.0)
    return c_abs * sign + tl.where(in_sub, c_sub * d, 0.0) + c_tv * tv_weight * d - mono


@triton.jit
def _axis_grad(lut_ptr, offs, x, idx, stride, D, mask, up_in_sub, down_in_sub, c_abs, c_sub, c_tv, c_mono):
    """Gradient at L[q] from the two differences along one axis: ``L[q+e] - L[q]`` (-) and
    ``L[q] - L[q-e]`` (+). ``up_in_sub``/``down_in_sub``: the difference's start p is in the sub-cube."""
    d_up = _upper_difference(lut_ptr, offs, x, idx, stride, D, mask)
    has_down = mask & (idx > 0)
    z = tl.load(lut_ptr + offs - stride, mask=has_down, other=0.0).to(x.dtype)
    d_down = tl.where(has_down, x - z, 0.0)
    # Start index of the up difference is idx, of the down difference idx - 1.
    up = _difference_grad(d_up, up_in_sub, (idx == 0) | (idx == D - 2), c_abs, c_sub, c_tv, c_mono)
    down = _difference_grad(d_down, down_in_sub, (idx == 1) | (idx == D - 1), c_abs, c_sub, c_tv, c_mono)
    return down - up


@triton.jit(do_not_specialize=["n_rows", "n_diff", "n_sub"])
def _regularizers_bwd_kernel(
    lut_ptr,  # (B, D, D, D, 3) contiguous, any float dtype
    gterms_ptr,  # (3,) upstream gradient of [smoothness, total_variation, monotonicity], any float dtype
    gterms_stride,  # its stride (0 when autograd expanded a scalar gradient)
    grad_ptr,  # (B, D, D, D, 3) output, LUT dtype
    D,  # lattice size
    n_rows,  # B*D*D rows of 3*D elements
    n_diff,  # N, as in the forward kernel
    n_sub,  # S, as in the forward kernel
    ACC: tl.constexpr,  # compute dtype: fp32, or fp64 for an fp64 LUT
    ROWS: tl.constexpr,  # rows per program
    COLS: tl.constexpr,  # next power of 2 >= 3*D
):
    offs, mask, r, g, b = _tile(D, n_rows, ROWS, COLS)
    x = tl.load(lut_ptr + offs, mask=mask, other=0.0).to(ACC)
    g_smooth = tl.load(gterms_ptr).to(ACC)
    g_tv = tl.load(gterms_ptr + gterms_stride).to(ACC)
    g_mono = tl.load(gterms_ptr + 2 * gterms_stride).to(ACC)
    # d(d^2/2)/dd = d and d(w d^2)/dd = 2 w d: the 1/2 and the 2 are folded in here.
    c_abs = g_smooth / n_diff
    c_sub = g_smooth / n_sub
    c_tv = 2 * g_tv / n_diff
    c_mono = g_mono / n_diff
    r_in, g_in, b_in = r < D - 1, g < D - 1, b < D - 1
    in_sub = r_in & g_in & b_in

    grad = _axis_grad(lut_ptr, offs, x, r, 3, D, mask, in_sub, g_in & b_in, c_abs, c_sub, c_tv, c_mono)
    grad += _axis_grad(lut_ptr, offs, x, g, 3 * D, D, mask, in_sub, r_in & b_in, c_abs, c_sub, c_tv, c_mono)
    grad += _axis_grad(
        lut_ptr, offs, x, b, 3 * D * D, D, mask, in_sub, r_in & g_in, c_abs, c_sub, c_tv, c_mono
    )
    tl.store(grad_ptr + offs, grad.to(grad_ptr.dtype.element_ty), mask=mask)


def launch_settings(n_rows: int, cols: int, device: torch.device) -> tuple[int, int]:
    """(rows per program, num_warps) for ``n_rows`` rows of ``cols`` elements (a power of 2) on ``device``.

    Tiles of about :data:`TILE_GPU` elements on CUDA, :data:`TILE_INTERPRETER` on CPU (the interpreter).
    The only place the launches are sized, so tests can run the interpreter with the GPU's tiles (or
    smaller ones) by replacing this function; the rows must be a power of 2.
    """
    target, num_warps = TILE_INTERPRETER if device.type == "cpu" else TILE_GPU
    return min(max(1, target // cols), triton.next_power_of_2(n_rows)), num_warps


def _launch(lut: torch.Tensor):
    """(grid, ROWS, COLS, num_warps, (D, n_rows, N, S)) for ``lut`` ``(B,D,D,D,3)``."""
    n, d = lut.shape[0], lut.shape[1]
    n_rows = n * d * d
    cols = triton.next_power_of_2(3 * d)
    rows, num_warps = launch_settings(n_rows, cols, lut.device)
    sizes = (d, n_rows, n * 3 * d * d * (d - 1), n * 3 * (d - 1) ** 3)
    return (triton.cdiv(n_rows, rows),), rows, cols, num_warps, sizes


def regularizer_terms_forward(lut: torch.Tensor) -> torch.Tensor:
    """``[smoothness, total_variation, monotonicity]`` of a contiguous ``lut`` ``(B,D,D,D,3)``."""
    grid, rows, cols, num_warps, sizes = _launch(lut)
    acc = tl.float64 if lut.dtype == torch.float64 else tl.float32
    partials = torch.empty(grid[0], 3, dtype=torch.float64, device=lut.device)
    _regularizers_fwd_kernel[grid](
        lut, partials, *sizes, ACC=acc, ROWS=rows, COLS=cols, num_warps=num_warps
    )
    return partials.sum(dim=0).to(lut.dtype)


def regularizer_terms_backward(lut: torch.Tensor, grad_terms: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. a contiguous ``lut`` of ``grad_terms . [smoothness, total_variation, monotonicity]``
    (``grad_terms``: ``(3,)``, any stride)."""
    grid, rows, cols, num_warps, sizes = _launch(lut)
    acc = tl.float64 if lut.dtype == torch.float64 else tl.float32
    grad = torch.empty_like(lut)
    _regularizers_bwd_kernel[grid](
        lut, grad_terms, grad_terms.stride(0), grad, *sizes,
        ACC=acc, ROWS=rows, COLS=cols, num_warps=num_warps,
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
