"""Triton kernels for :func:`lutkern.apply_lut`: a forward kernel and a backward kernel that produces the
image gradient and the LUT gradient in the same pass over the pixels.

Layout: jit helpers -> kernels -> launchers -> :class:`ApplyLutFunction` -> :func:`apply_lut_triton`.

Conventions are those of :mod:`lutkern.reference.apply`, the oracle these kernels are tested against:
image ``(N,3,H,W)`` RGB planes; LUT ``(N,D,D,D,3)`` one per image or ``(1,D,D,D,3)`` shared, indexed
``lut[n, b, g, r, c]`` (red index fastest in memory); lattice point ``(r, g, b)`` sits at colour
``(r, g, b) / (D - 1)``. Each channel is clamped to [0, 1] (the clamp's gradient passes at exactly 0 and
1, where the edge cell's one-sided slope applies, and is zero strictly outside; +-inf clamp to the edge);
the cell origin is ``min(floor(x * (D-1)), D-2)``. A NaN in any channel gives a NaN output pixel and no
gradient; its coordinates are replaced before any LUT read, so no read leaves the LUT.
Storage may be float16/bfloat16/float32; all arithmetic is float32.

One program handles ``BLOCK`` pixels of one image: grid ``(cdiv(H*W, BLOCK), N)``, a single launch for
the whole batch. The image planes are read once and the output written once; LUT reads are gathers that
mostly hit the cache (a 33^3 float32 LUT is 431 KB).

LUT gradient, deterministic: each pixel scatters ``weight * grad_out`` to its 8 (trilinear), 4
(tetrahedral) or 1 (nearest) lattice points with integer atomics in 64-bit fixed point, scaled per LUT
by ``2^K / max|grad_out|`` with ``K`` chosen so that no sum can overflow. Integer addition is associative,
so the result is bitwise reproducible whatever order the GPU runs the atomics in, and it is more precise
than a float32 sum (each term keeps its float32 rounding; the quantum is ``max|grad_out| * 2^-K``, with
``K >= 34`` for up to 2^28 pixels per LUT). A shared LUT spreads its atomics over a few replica buffers
(less contention), summed exactly afterwards. On GPU, runs of neighbouring pixels that hit the same
lattice point are summed in registers first (a segmented scan over the block), so a smooth image issues
one atomic per run rather than per pixel; in fixed point this changes no bit of the result.
When ``grad_out`` holds a NaN or an inf, fixed point cannot represent the result: the kernel then adds
float32 values with ``tl.atomic_add``, which propagates NaN/inf like the reference but whose rounding
depends on the order of the additions (nondeterministic on GPU at the level of float32 rounding;
bounded in the tests).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._backend import interpreter_enabled

_INTERP_CODES = {"trilinear": 0, "tetrahedral": 1, "nearest": 2}
_CORNERS = {0: 8, 1: 4, 2: 1}  # lattice points read per pixel, by interpolation code
_MAX_GRID_Y = 65535  # CUDA limit on the batch grid axis
_SHARED_LUT_REPLICAS = 8  # gradient buffers a shared LUT's atomics are spread over
_FIXED_POINT_BITS = 62  # int64 headroom: sum of P terms of magnitude <= 2^K stays below 2^62
# (BLOCK, num_warps) on GPU. About 1-4 pixels per thread: more pixels per thread give more loads in
# flight per thread but more registers (sm_90: ~110 per thread for 4 trilinear pixels forward, ~120 for
# 2 backward), hence fewer resident warps. bench/gpu_bench.py sweeps alternatives.
GPU_LAUNCH = {"forward": (1024, 8), "backward": (256, 8)}
# Backward: sum runs of neighbouring pixels on the same lattice point before the atomics (fewer atomics on
# smooth images, a segmented scan's cost on noisy ones; bitwise the same result in fixed point). None: on
# GPU only, since the interpreter runs scans element by element (far too slow for the test suite).
AGGREGATE_RUNS: bool | None = None


@triton.jit
def _load_rgb(ptr, pix, mask, HW):
    """The three planes of a block of pixels of one ``(3,H,W)`` tensor, as float32."""
    r = tl.load(ptr + pix, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(ptr + HW + pix, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(ptr + 2 * HW + pix, mask=mask, other=0.0).to(tl.float32)
    return r, g, b


@triton.jit
def _lattice(x, nan, D):
    """Lattice coordinate in [0, D-1], computed exactly as the reference does (clamp, then times D-1).

    NaN pixels are sent to lattice point 0 so that every later index is in range.
    """
    x = tl.where(nan, 0.0, x)
    return tl.minimum(tl.maximum(x, 0.0), 1.0) * (D - 1)


@triton.jit
def _cell(x, D, INTERP: tl.constexpr):
    """Integer lattice index and fraction of one lattice coordinate ``x`` in [0, D-1].

    Trilinear/tetrahedral: the cell origin ``min(floor(x), D-2)`` (x == D-1 uses the last cell, whose
    one-sided slope is the gradient there) and the fraction in [0, 1]. Nearest: the nearest lattice point,
    ties to even like ``torch.round``, and fraction 0.
    """
    fl = tl.floor(x)
    i = fl.to(tl.int32)
    if INTERP == 2:
        rest = x - fl
        up = (rest > 0.5) | ((rest == 0.5) & ((i & 1) == 1))
        return i + up.to(tl.int32), tl.zeros_like(x)
    i = tl.minimum(i, D - 2)
    return i, x - i.to(tl.float32)


@triton.jit
def _corner(K: tl.constexpr, fr, fg, fb, D, INTERP: tl.constexpr):
    """Lattice point ``K`` of a pixel's stencil: (LUT element offset from the cell origin, weight,
    d weight / d fr, d weight / d fg, d weight / d fb).

    Trilinear: corner ``K = dr + 2 dg + 4 db`` with weight ``wr * wg * wb``. Tetrahedral: the path
    c000 -> ca -> cb -> c111 that steps along the axes in decreasing order of fraction, equal fractions
    taken red, then green, then blue (the six-tetrahedra rules of the reference's ``_tetrahedral``); the
    K-th point of the path weighs ``f_K - f_(K+1)`` with ``f_0 = 1``, ``f_4 = 0`` and ``f_1 >= f_2 >= f_3``
    the sorted fractions. Nearest: the single point, weight 1.
    """
    sr = 3
    sg = 3 * D
    sb = 3 * D * D
    if INTERP == 0:
        # Weight along an axis: f when the corner is on the far side of the cell, 1 - f otherwise.
        dr, dg, db = K % 2, (K // 2) % 2, K // 4
        wr = (1 - dr) + (2 * dr - 1) * fr
        wg = (1 - dg) + (2 * dg - 1) * fg
        wb = (1 - db) + (2 * db - 1) * fb
        off = dr * sr + dg * sg + db * sb
        w = wr * wg * wb
        dwr, dwg, dwb = (2 * dr - 1) * wg * wb, wr * (2 * dg - 1) * wb, wr * wg * (2 * db - 1)
    elif INTERP == 1:
        # The axis stepped first (r1/g1/b1) and second (r2/g2/b2); the third is the remaining one.
        r1 = (fr >= fg) & (fr >= fb)
        g1 = ~r1 & (fg >= fb)
        b1 = ~r1 & ~g1
        r2 = (g1 & (fr >= fb)) | (b1 & (fr >= fg))
        g2 = (r1 & (fg >= fb)) | (b1 & (fr < fg))
        b2 = ~r2 & ~g2 & ~b1
        # e[j][axis]: 1.0 when the j-th step is along that axis; e[0] and e[4] are zero.
        e1r, e1g, e1b = r1.to(tl.float32), g1.to(tl.float32), b1.to(tl.float32)
        e2r, e2g, e2b = r2.to(tl.float32), g2.to(tl.float32), b2.to(tl.float32)
        e3r, e3g, e3b = 1.0 - e1r - e2r, 1.0 - e1g - e2g, 1.0 - e1b - e2b
        f1 = e1r * fr + e1g * fg + e1b * fb
        f2 = e2r * fr + e2g * fg + e2b * fb
        f3 = e3r * fr + e3g * fg + e3b * fb
        s1 = r1.to(tl.int32) * sr + g1.to(tl.int32) * sg + b1.to(tl.int32) * sb
        s2 = r2.to(tl.int32) * sr + g2.to(tl.int32) * sg + b2.to(tl.int32) * sb
        if K == 0:
            off, w, dwr, dwg, dwb = 0, 1.0 - f1, -e1r, -e1g, -e1b
        elif K == 1:
            off, w, dwr, dwg, dwb = s1, f1 - f2, e1r - e2r, e1g - e2g, e1b - e2b
        elif K == 2:
            off, w, dwr, dwg, dwb = s1 + s2, f2 - f3, e2r - e3r, e2g - e3g, e2b - e3b
        else:
            off, w, dwr, dwg, dwb = sr + sg + sb, f3, e3r, e3g, e3b
    else:
        zero = tl.zeros_like(fr)
        off, w, dwr, dwg, dwb = 0, zero + 1.0, zero, zero, zero
    return off, w, dwr, dwg, dwb


@triton.jit
def _pixel_cells(img_n, pix, mask, HW, D, INTERP: tl.constexpr):
    """Per pixel of the block: raw channel values, NaN flag, LUT element offset of the cell origin and
    the fractions within the cell."""
    xr, xg, xb = _load_rgb(img_n, pix, mask, HW)
    nan = (xr != xr) | (xg != xg) | (xb != xb)
    ir, fr = _cell(_lattice(xr, nan, D), D, INTERP)
    ig, fg = _cell(_lattice(xg, nan, D), D, INTERP)
    ib, fb = _cell(_lattice(xb, nan, D), D, INTERP)
    base = ((ib * D + ig) * D + ir) * 3
    return xr, xg, xb, nan, base, fr, fg, fb


@triton.jit
def _apply_lut_fwd_kernel(
    img_ptr,  # (N,3,H,W) contiguous image, float16/bfloat16/float32
    lut_ptr,  # (N|1,D,D,D,3) contiguous LUT
    out_ptr,  # (N,3,H,W) output, the image's dtype
    HW,  # pixels per image plane, H*W
    lut_batch_stride,  # elements from one LUT to the next: D^3*3, or 0 for a LUT shared by the batch
    D,  # LUT size
    INTERP: tl.constexpr,  # 0 trilinear, 1 tetrahedral, 2 nearest
    CORNERS: tl.constexpr,  # lattice points per pixel: 8, 4 or 1
    BLOCK: tl.constexpr,  # pixels per program
):
    pid = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)  # batch offsets of large batches overflow int32
    pix = pid * BLOCK + tl.arange(0, BLOCK)
    mask = pix < HW
    img_n = img_ptr + n * 3 * HW
    lut_n = lut_ptr + n * lut_batch_stride
    _, _, _, nan, base, fr, fg, fb = _pixel_cells(img_n, pix, mask, HW, D, INTERP)
    out_r = tl.zeros((BLOCK,), tl.float32)
    out_g = tl.zeros((BLOCK,), tl.float32)
    out_b = tl.zeros((BLOCK,), tl.float32)
    for k in tl.static_range(CORNERS):
        off, w, _, _, _ = _corner(k, fr, fg, fb, D, INTERP)
        p = lut_n + base + off
        out_r += w * tl.load(p, mask=mask, other=0.0).to(tl.float32)
        out_g += w * tl.load(p + 1, mask=mask, other=0.0).to(tl.float32)
        out_b += w * tl.load(p + 2, mask=mask, other=0.0).to(tl.float32)
    out_n = out_ptr + n * 3 * HW
    dtype = out_ptr.dtype.element_ty
    tl.store(out_n + pix, tl.where(nan, float("nan"), out_r).to(dtype), mask=mask)
    tl.store(out_n + HW + pix, tl.where(nan, float("nan"), out_g).to(dtype), mask=mask)
    tl.store(out_n + 2 * HW + pix, tl.where(nan, float("nan"), out_b).to(dtype), mask=mask)


@triton.jit
def _segmented_sum(start_a, a, start_b, b):
    """Combine function of an inclusive scan that restarts the sum wherever ``start`` is set."""
    return start_a | start_b, tl.where(start_b, b, a + b)


@triton.jit
def _apply_lut_bwd_kernel(
    img_ptr,  # (N,3,H,W) contiguous image, as in the forward
    lut_ptr,  # (N|1,D,D,D,3) contiguous LUT, as in the forward
    dout_ptr,  # (N,3,H,W) contiguous gradient of the output, the image's dtype
    dimg_ptr,  # (N,3,H,W) image gradient, the image's dtype (unused unless NEED_DIMG)
    dlut_ptr,  # (n_buffers, D^3*3) LUT gradient accumulators: int64 if FIXED_POINT else float32
    inv_max_ptr,  # (n_buffers,) float32 1/max|dout| of the images feeding each buffer (FIXED_POINT)
    HW,  # pixels per image plane, H*W
    lut_batch_stride,  # elements from one LUT to the next: D^3*3, or 0 for a shared LUT
    n_buffers,  # image n accumulates into buffer n % n_buffers
    D,  # LUT size
    two_k,  # 2^K, the fixed-point scale after normalising by max|dout|
    INTERP: tl.constexpr,  # 0 trilinear, 1 tetrahedral, 2 nearest
    CORNERS: tl.constexpr,  # lattice points per pixel: 8, 4 or 1
    FIXED_POINT: tl.constexpr,  # int64 fixed-point accumulation (deterministic) or float32 atomics
    NEED_DIMG: tl.constexpr,  # compute the image gradient
    NEED_DLUT: tl.constexpr,  # compute the LUT gradient
    AGGREGATE: tl.constexpr,  # sum runs of neighbouring pixels that share a lattice point before the atomics
    BLOCK: tl.constexpr,  # pixels per program
):
    pid = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    pix = pid * BLOCK + tl.arange(0, BLOCK)
    mask = pix < HW
    img_n = img_ptr + n * 3 * HW
    lut_n = lut_ptr + n * lut_batch_stride
    xr, xg, xb, nan, base, fr, fg, fb = _pixel_cells(img_n, pix, mask, HW, D, INTERP)
    gor, gog, gob = _load_rgb(dout_ptr + n * 3 * HW, pix, mask, HW)
    valid = mask & ~nan  # NaN pixels get no gradient, like the reference (their output is a constant)
    buf = n % n_buffers
    dlut_n = dlut_ptr + buf * D * D * D * 3
    if NEED_DLUT:
        inv_max = 0.0
        if FIXED_POINT:
            inv_max = tl.load(inv_max_ptr + buf)
        # The LUT gradient is scattered as (BLOCK, 4) tiles: one row per pixel, the 3 channels and a pad.
        chan = tl.arange(0, 4)[None, :]
        go = tl.where(chan == 0, gor[:, None], tl.where(chan == 1, gog[:, None], gob[:, None]))
        go = tl.where(valid[:, None] & (chan < 3), go, 0.0)
        if AGGREGATE:
            # Smooth images put runs of neighbouring pixels on the same lattice points: one atomic per run
            # (at its last pixel) instead of one per pixel. Runs are found from the neighbours' cells.
            lane = tl.arange(0, BLOCK)
            _, _, _, _, base_prev, fr_prev, fg_prev, fb_prev = _pixel_cells(
                img_n, pix - 1, (pix >= 1) & (pix - 1 < HW), HW, D, INTERP
            )
            _, _, _, _, base_next, fr_next, fg_next, fb_next = _pixel_cells(
                img_n, pix + 1, pix + 1 < HW, HW, D, INTERP
            )
    # d out / d (fr, fg, fb), contracted with dout.
    gr = tl.zeros((BLOCK,), tl.float32)
    gg = tl.zeros((BLOCK,), tl.float32)
    gb = tl.zeros((BLOCK,), tl.float32)
    for k in tl.static_range(CORNERS):
        off, w, dwr, dwg, dwb = _corner(k, fr, fg, fb, D, INTERP)
        if NEED_DIMG:
            p = lut_n + base + off
            dot = tl.load(p, mask=mask, other=0.0).to(tl.float32) * gor
            dot += tl.load(p + 1, mask=mask, other=0.0).to(tl.float32) * gog
            dot += tl.load(p + 2, mask=mask, other=0.0).to(tl.float32) * gob
            gr += dwr * dot
            gg += dwg * dot
            gb += dwb * dot
        if NEED_DLUT:
            v = w[:, None] * go
            if FIXED_POINT:  # round(v / max|dout| * 2^K)
                v = tl.floor(v * inv_max * two_k + 0.5).to(tl.int64)
            point = base + off
            write = valid[:, None] & (chan < 3)
            if AGGREGATE:
                off_prev, _, _, _, _ = _corner(k, fr_prev, fg_prev, fb_prev, D, INTERP)
                off_next, _, _, _, _ = _corner(k, fr_next, fg_next, fb_next, D, INTERP)
                start = (point != base_prev + off_prev) | (lane == 0)
                end = (point != base_next + off_next) | (lane == BLOCK - 1)
                # Padding lanes (past H*W) add zeros but may end a run: their writes stay enabled.
                starts = tl.broadcast_to(start[:, None], (BLOCK, 4))
                _, v = tl.associative_scan((starts, v), 0, _segmented_sum)
                write = end[:, None] & (chan < 3)
            tl.atomic_add(dlut_n + point[:, None] + chan, v, mask=write, sem="relaxed")
    if NEED_DIMG:
        # Chain rule through x * (D-1) and the clamp (gradient kept at exactly 0 and 1).
        scale = (D - 1).to(tl.float32)
        dimg_n = dimg_ptr + n * 3 * HW
        dtype = dimg_ptr.dtype.element_ty
        keep_r = valid & (xr >= 0.0) & (xr <= 1.0)
        keep_g = valid & (xg >= 0.0) & (xg <= 1.0)
        keep_b = valid & (xb >= 0.0) & (xb <= 1.0)
        tl.store(dimg_n + pix, tl.where(keep_r, gr * scale, 0.0).to(dtype), mask=mask)
        tl.store(dimg_n + HW + pix, tl.where(keep_g, gg * scale, 0.0).to(dtype), mask=mask)
        tl.store(dimg_n + 2 * HW + pix, tl.where(keep_b, gb * scale, 0.0).to(dtype), mask=mask)


def launch_settings(kernel: str, n_pixels: int, device: torch.device) -> tuple[int, int]:
    """(BLOCK, num_warps) of ``kernel`` (``"forward"`` or ``"backward"``) for images of ``n_pixels``.

    CUDA: :data:`GPU_LAUNCH`. CPU (the interpreter, whose cost grows with the number of programs): one
    program per image of up to 4096 pixels. The only place the launches are sized, so tests can run the
    interpreter with the GPU's blocks (or smaller ones) by replacing this function.
    """
    if device.type == "cpu":
        return min(triton.next_power_of_2(n_pixels), 4096), 4
    return GPU_LAUNCH[kernel]


def _check(img: torch.Tensor, lut: torch.Tensor, interpolation: str) -> None:
    for name, t in (("image", img), ("lut", lut)):
        if t.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise TypeError(
                f"the triton backend takes float16/bfloat16/float32, got {name} dtype {t.dtype} "
                "(float64 runs on backend='torch')"
            )
    if interpolation not in _INTERP_CODES:
        raise ValueError(f"interpolation must be one of {tuple(_INTERP_CODES)}, got {interpolation!r}")
    if img.device.type == "cpu" and not interpreter_enabled():
        raise RuntimeError("the triton backend needs CUDA tensors, or TRITON_INTERPRET=1 for CPU tensors")
    n, _, h, w = img.shape
    if n > _MAX_GRID_Y:
        raise ValueError(f"the triton backend takes at most {_MAX_GRID_Y} images, got {tuple(img.shape)}")
    if 3 * h * w >= 2**31:
        raise ValueError(f"image planes too large for int32 pixel offsets: {tuple(img.shape)}")


def _apply_lut_fwd(img: torch.Tensor, lut: torch.Tensor, interp: int, out: torch.Tensor | None = None):
    """The forward into ``out`` (a fresh tensor when None) for contiguous ``img`` and ``lut``."""
    n, _, h, w = img.shape
    d = lut.shape[1]
    out = torch.empty_like(img) if out is None else out
    block, num_warps = launch_settings("forward", h * w, img.device)
    _apply_lut_fwd_kernel[(triton.cdiv(h * w, block), n)](
        img, lut, out, h * w, 0 if lut.shape[0] == 1 else d**3 * 3, d,
        INTERP=interp, CORNERS=_CORNERS[interp], BLOCK=block, num_warps=num_warps,
    )
    return out


def _apply_lut_bwd(img, lut, dout, interp: int, need_dimg: bool, need_dlut: bool):
    """(image gradient or None, LUT gradient or None) for the output gradient ``dout``."""
    n, _, h, w = img.shape
    d = lut.shape[1]
    shared = lut.shape[0] == 1
    n_buffers = min(n, _SHARED_LUT_REPLICAS) if shared else n
    need_dimg = need_dimg and interp != _INTERP_CODES["nearest"]  # nearest: zero image gradient
    dimg = torch.empty_like(img) if need_dimg else img
    fixed = False
    inv_max = torch.ones(n_buffers, dtype=torch.float32, device=img.device)
    two_k = 1.0
    if need_dlut:
        peak = torch.linalg.vector_norm(dout.flatten(1), float("inf"), dim=1).double()  # max|dout|, NaN kept
        peak = peak.amax().expand(n_buffers) if shared else peak
        # K such that the P pixels summed into one LUT, each term <= 2^K, stay below 2^62.
        pixels = n * h * w if shared else h * w
        two_k = float(2 ** (_FIXED_POINT_BITS - (pixels - 1).bit_length()))
        inv_max = torch.where(peak > 0, 1 / peak, 1.0).float()
        fixed = bool(torch.isfinite(peak).all() & torch.isfinite(inv_max).all())
    acc = torch.zeros(n_buffers if need_dlut else 1, d**3 * 3, dtype=torch.int64 if fixed else torch.float32,
                      device=img.device)
    if need_dimg or need_dlut:
        block, num_warps = launch_settings("backward", h * w, img.device)
        aggregate = not interpreter_enabled() if AGGREGATE_RUNS is None else AGGREGATE_RUNS
        _apply_lut_bwd_kernel[(triton.cdiv(h * w, block), n)](
            img, lut, dout, dimg, acc, inv_max, h * w, 0 if shared else d**3 * 3, n_buffers, d, two_k,
            INTERP=interp, CORNERS=_CORNERS[interp], FIXED_POINT=fixed, NEED_DIMG=need_dimg,
            NEED_DLUT=need_dlut, AGGREGATE=aggregate, BLOCK=block, num_warps=num_warps,
        )
    dlut = None
    if need_dlut:
        if shared:  # the replicas: exact in int64 (the bound on K covers all N*H*W terms)
            acc, inv_max = acc.sum(0, keepdim=True), inv_max[:1]
        if fixed:
            acc = acc.double() / (inv_max.double()[:, None] * two_k)
        dlut = acc.view(lut.shape).to(lut.dtype)
    if not need_dimg:
        dimg = torch.zeros_like(img) if interp == _INTERP_CODES["nearest"] else None
    return dimg, dlut


class ApplyLutFunction(torch.autograd.Function):
    """``apply_lut`` with Triton kernels; gradients for the image and the LUT."""

    @staticmethod
    def forward(ctx, img: torch.Tensor, lut: torch.Tensor, interpolation: str) -> torch.Tensor:
        img, lut = img.contiguous(), lut.contiguous()
        ctx.interp = _INTERP_CODES[interpolation]
        ctx.save_for_backward(img, lut)
        return _apply_lut_fwd(img, lut, ctx.interp)

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        img, lut = ctx.saved_tensors
        dimg, dlut = _apply_lut_bwd(
            img, lut, dout.contiguous(), ctx.interp, ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        )
        return dimg, dlut, None


def apply_lut_triton(
    img: torch.Tensor, lut: torch.Tensor, interpolation: str = "trilinear", *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Apply ``lut`` ``(N|1,D,D,D,3)`` to ``img`` ``(N,3,H,W)`` with the Triton kernels.

    ``img`` float16/bfloat16/float32 (float64 raises TypeError: use the torch backend), any strides;
    ``lut`` the same dtypes, one per image or shared. Returns ``(N,3,H,W)`` in ``img``'s dtype,
    differentiable with respect to both (see the module docstring for the conventions and the
    deterministic LUT gradient); or, with ``out`` (contiguous, like ``img``), writes into it without
    autograd. Shapes are assumed checked by :func:`lutkern.apply_lut`.
    """
    _check(img, lut, interpolation)
    if out is not None:
        return _apply_lut_fwd(img.contiguous(), lut.contiguous(), _INTERP_CODES[interpolation], out)
    return ApplyLutFunction.apply(img, lut, interpolation)
