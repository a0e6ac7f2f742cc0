"""LUT application on CPU tensors by a compiled C loop (``apply_lut_cpu.c``): the torch backend's CPU path.

Eager torch pays one pass over memory per op, and a LUT lookup needs dozens of ops per pixel (8 corners
x 3 channels gathered, then blended; the backward scatters as many). The C loop does the whole per-pixel
computation in one pass. It is built on first use with the system C compiler (see :mod:`lutkern._cbuild`)
and called through ctypes, which releases the GIL, on the same deterministic chunk plan as the eager
fallback (:mod:`lutkern.ops.apply_lut_torch`): whole images per worker thread with one LUT per image,
a private LUT-gradient accumulator per worker with a shared LUT. Without a C compiler, or with
``LUTKERN_NATIVE=0``, the torch backend uses the eager fallback instead (same results within rounding).

Computation runs in float32 (float64 when the image or the LUT is float64); half-precision images are
converted chunk by chunk. On x86-64 CPUs with AVX2, float32 trilinear and tetrahedral run 8 pixels at a
time (same bits as the scalar loop). The LUT gradient is accumulated in the compute dtype. First-order
gradients only (no double backward).
"""

from __future__ import annotations

import torch

from . import page_pool
from .apply_lut_native import CHUNK, CODES, MIN_WORK, has_simd, library, native_available
from .chunks import compute_dtype, run_plan, schedule

__all__ = ["ApplyLutCpu", "apply_lut_cpu", "has_simd", "native_available"]
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _kernel(direction: str, dtype: torch.dtype):
    return getattr(library(), f"lut_{direction}_{_SUFFIX[dtype]}")


def _planes(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A ``(3,P)`` chunk with unit pixel stride in ``dtype`` (the chunk itself when it already is)."""
    return t if t.dtype == dtype else t.to(dtype)


def _forward_into(out: torch.Tensor, image: torch.Tensor, lut: torch.Tensor, interpolation: str, simd: bool):
    """Write the graded ``image`` (contiguous ``(N,3,H,W)``) into ``out`` (contiguous, same shape and dtype,
    not sharing memory with the inputs: the C loop's pointers are ``restrict``)."""
    n, _, h, w = image.shape
    d = lut.shape[1]
    dtype = compute_dtype(image, lut)
    luts = lut.to(dtype).contiguous()
    kernel, code = _kernel("forward", dtype), CODES[interpolation]
    src, dst = image.reshape(n, 3, h * w), out.view(n, 3, h * w)

    def chunk(_, job):
        i, m, sl = job
        x, o = _planes(src[i, :, sl], dtype), dst[i, :, sl]
        res = o if o.dtype == dtype else torch.empty_like(x)
        ptrs = (x.data_ptr(), x.stride(0), res.data_ptr(), res.stride(0))
        kernel(*ptrs, x.shape[1], luts[m].data_ptr(), d, code, int(simd))
        if res is not o:
            o.copy_(res)

    run_plan(chunk, schedule(n, lut.shape[0], h * w, image.device, CHUNK, MIN_WORK))
    return out


class ApplyLutCpu(torch.autograd.Function):
    """``image (N,3,H,W)``, ``lut (N|1,D,D,D,3)`` (contiguous, CPU) -> ``(N,3,H,W)`` in the image's dtype."""

    @staticmethod
    def forward(ctx, image: torch.Tensor, lut: torch.Tensor, interpolation: str, simd: bool = True):
        # A fresh output whose pages an earlier output already touched, when one is free (page_pool).
        out = _forward_into(page_pool.empty(image.shape, image.dtype), image, lut, interpolation, simd)
        ctx.save_for_backward(image, lut)
        ctx.interpolation, ctx.simd = interpolation, int(simd)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        image, lut = ctx.saved_tensors
        need_image, need_lut = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n, _, h, w = image.shape
        m, d = lut.shape[0], lut.shape[1]
        dtype = compute_dtype(image, lut)
        luts = lut.to(dtype).contiguous()
        kernel, code = _kernel("backward", dtype), CODES[ctx.interpolation]
        src = image.reshape(n, 3, h * w)
        gsrc = grad_out.contiguous().reshape(n, 3, h * w)
        plan = schedule(n, m, h * w, image.device, CHUNK, MIN_WORK)
        # One accumulator per LUT (a single writer each), or per worker for a shared LUT (summed in a fixed
        # order afterwards): deterministic without atomics or locks. Each is zeroed by its writer just
        # before its first use: in parallel, and it is then in that core's cache.
        acc = torch.empty((len(plan) if m == 1 else m, d, d, d, 3), dtype=dtype) if need_lut else None
        zeroed = set()
        grad_image = torch.empty_like(src) if need_image else None

        def chunk(wk, job):
            i, mi, sl = job
            slot = wk if m == 1 else mi
            if acc is not None and slot not in zeroed:
                acc[slot].zero_()
                zeroed.add(slot)
            x, go = _planes(src[i, :, sl], dtype), _planes(gsrc[i, :, sl], dtype)
            gx = None if grad_image is None else grad_image[i, :, sl]
            res = gx if gx is None or gx.dtype == dtype else torch.empty_like(x)
            kernel(
                x.data_ptr(), x.stride(0), go.data_ptr(), go.stride(0),
                None if res is None else res.data_ptr(), 0 if res is None else res.stride(0),
                None if acc is None else acc[slot].data_ptr(),
                x.shape[1], luts[mi].data_ptr(), d, code, ctx.simd,
            )  # fmt: skip
            if res is not gx:
                gx.copy_(res)

        run_plan(chunk, plan)
        grad_lut = None
        if need_lut:
            for slot in set(range(acc.shape[0])) - zeroed:  # no pixels reached it (an empty image)
                acc[slot].zero_()
            grad_lut = (acc.sum(0, keepdim=True) if m == 1 and acc.shape[0] > 1 else acc).to(lut.dtype)
        if need_image:
            grad_image = grad_image.view(image.shape)
        return grad_image, grad_lut, None, None


def apply_lut_cpu(
    image: torch.Tensor,
    lut: torch.Tensor,
    interpolation: str = "trilinear",
    *,
    simd: bool = True,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply ``lut`` ``(N|1,D,D,D,3)`` to ``image`` ``(N,3,H,W)`` on the CPU (validated by the caller;
    needs :func:`native_available`). ``simd=False`` keeps float32 to the scalar loop (the vector loop,
    where the CPU has one, gives the same bits; see :func:`has_simd`). ``out``: a contiguous tensor like
    ``image`` to write into, without autograd (checked by the caller)."""
    if out is not None:
        return _forward_into(out, image.contiguous(), lut.contiguous(), interpolation, simd)
    return ApplyLutCpu.apply(image.contiguous(), lut.contiguous(), interpolation, simd)
