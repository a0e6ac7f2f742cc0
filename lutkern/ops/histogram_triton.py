"""Triton kernel for :func:`lutkern.channel_histogram`: per-channel counts of an image batch on the GPU.

Layout: jit helper -> kernel -> launch settings -> :func:`channel_histogram_triton`.

Conventions are those of :mod:`lutkern.reference.histogram`, the oracle the kernel is tested against: a
float value ``v`` counts in bin ``round-half-even(clamp(v, 0, 1) * (bins - 1))``, computed in float32
(float64 for float64 images; float16/bfloat16 are widened to float32, exactly), NaN not counted; an integer
code counts in its own bin (codes outside ``[0, bins)`` are refused by the caller).

Grid ``(B*C, parts)``: program ``(plane, part)`` counts ``chunk`` pixels of one channel plane, ``BLOCK``
at a time. With up to :data:`MAX_PROGRAM_BINS` bins it keeps a private histogram of the plane's part in
registers (``tl.histogram`` of each block, summed), then adds it to the plane's row of the output with
one int64 atomic per non-empty bin: a few hundred atomics per program instead of one per pixel on
256 bins. With more bins (16-bit codes: 65536) a private histogram does not fit a program, and each
pixel is added by its own atomic: many bins spread the pixels, so few atomics collide. Integer addition
is exact and associative, so the counts are the same whatever order the programs run in.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._backend import interpreter_enabled

MAX_PROGRAM_BINS = 1024  # up to this many bins, per-program histograms in registers; above, per-pixel atomics
# GPU launch: BLOCK pixels per step, num_warps per program, and about this many programs in all (a few
# per SM), each looping over its part of a plane.
GPU_LAUNCH = {"block": 1024, "num_warps": 4, "programs": 2048}
# No fused multiply-adds: a fused x * (bins - 1) - floor(...) would skip the product's rounding and move ties.
COMPILE_OPTIONS = {"enable_fp_fusion": False}
_MAX_PARTS = 65535  # CUDA limit on the second grid axis
_MAX_PIXELS = 1 << 30  # pixel offsets within a plane stay in int32 (plus a chunk)


@triton.jit
def _bin(v, inside, bins):
    """Bin of each value of a block, and whether it counts (inside the plane, not NaN); values that do not
    count are sent to bin 0."""
    if v.dtype.is_floating():
        x = v.to(tl.float64) if v.dtype == tl.float64 else v.to(tl.float32)
        valid = inside & (x == x)
        x = tl.where(x > 0, tl.where(x < 1, x, 1.0), 0.0)  # NaN and -0.0 give +0.0
        y = x * (bins - 1)  # rounded to x's type, as in torch (COMPILE_OPTIONS: no fused multiply-add)
        # Round half to even: y - floor(y) is exact for y >= 0.
        low = tl.floor(y)
        rest = y - low
        k = low.to(tl.int32)
        k += ((rest > 0.5) | ((rest == 0.5) & ((k & 1) == 1))).to(tl.int32)
    else:
        k = v.to(tl.int32)
        valid = inside
    return tl.where(valid, k, 0), valid


@triton.jit
def _histogram_kernel(
    x_ptr,  # (B,C,H*W) planes: pixel p of plane (b, c) at b * stride_b + c * stride_c + p * stride_p
    out_ptr,  # (B*C, bins) int64 counts, zero on entry
    HW,  # pixels per plane, H*W
    C,  # channels per image
    stride_b,  # element strides of x
    stride_c,
    stride_p,
    bins,  # number of bins
    chunk,  # pixels per program: a multiple of BLOCK
    NB: tl.constexpr,  # length of the private histogram: a power of two >= bins (1 with PER_PIXEL)
    PER_PIXEL: tl.constexpr,  # one atomic per pixel instead of a private histogram (many bins)
    BLOCK: tl.constexpr,  # pixels per step
):
    plane = tl.program_id(0)
    part = tl.program_id(1)
    base = x_ptr + (plane // C).to(tl.int64) * stride_b + (plane % C).to(tl.int64) * stride_c
    row = out_ptr + plane.to(tl.int64) * bins
    lanes = tl.arange(0, BLOCK)
    acc = tl.zeros((NB,), tl.int32)
    skipped = 0  # lanes sent to bin 0 without counting (past the plane's end, NaN)
    for start in range(0, chunk, BLOCK):
        pix = part * chunk + start + lanes
        inside = pix < HW
        v = tl.load(base + pix.to(tl.int64) * stride_p, mask=inside, other=0)
        k, valid = _bin(v, inside, bins)
        if PER_PIXEL:
            tl.atomic_add(row + k, tl.full((BLOCK,), 1, tl.int64), mask=valid, sem="relaxed")
        else:
            acc += tl.histogram(k, NB)
            skipped += BLOCK - tl.sum(valid.to(tl.int32))
    if not PER_PIXEL:
        idx = tl.arange(0, NB)
        acc -= tl.where(idx == 0, skipped, 0)
        tl.atomic_add(row + idx, acc.to(tl.int64), mask=(idx < bins) & (acc != 0), sem="relaxed")


def launch_settings(planes: int, hw: int, device: torch.device) -> tuple[int, int, int]:
    """(BLOCK, chunk, num_warps) for ``planes`` planes of ``hw`` pixels: programs count ``chunk`` pixels
    each, ``BLOCK`` at a time.

    CUDA: :data:`GPU_LAUNCH`, the planes split into parts so that there are about ``programs`` programs.
    CPU (the interpreter, whose cost grows with the number of programs): one program per plane, blocks of
    up to 4096 pixels. The only place the launch is sized, so tests can run the interpreter with several
    programs per plane and several steps per program by replacing this function.
    """
    if device.type == "cpu":
        block = min(triton.next_power_of_2(hw), 4096)
        return block, triton.cdiv(hw, block) * block, 4
    block, num_warps, programs = GPU_LAUNCH["block"], GPU_LAUNCH["num_warps"], GPU_LAUNCH["programs"]
    parts = max(1, min(triton.cdiv(programs, planes), triton.cdiv(hw, block), _MAX_PARTS))
    return block, triton.cdiv(triton.cdiv(hw, parts), block) * block, num_warps


def channel_histogram_triton(images: torch.Tensor, bins: int) -> torch.Tensor:
    """``(B,C,bins)`` int64 counts of ``images`` ``(B,C,H,W)`` (checked by the caller: a dtype of
    :func:`lutkern.channel_histogram`, integer codes in ``[0, bins)``, at least one pixel), any strides,
    on CUDA or (``TRITON_INTERPRET=1``) the CPU."""
    if images.device.type == "cpu" and not interpreter_enabled():
        raise RuntimeError("the triton backend needs CUDA tensors, or TRITON_INTERPRET=1 for CPU tensors")
    b, c, h, w = images.shape
    if h * w >= _MAX_PIXELS:
        raise ValueError(f"the triton backend takes planes of under 2^30 pixels, got {tuple(images.shape)}")
    planes = images.flatten(2)  # a view unless H and W cannot share one stride
    out = torch.zeros(b * c, bins, dtype=torch.int64, device=images.device)
    block, chunk, num_warps = launch_settings(b * c, h * w, images.device)
    per_pixel = bins > MAX_PROGRAM_BINS
    # No fewer bins than threads: each thread of the program then holds distinct bins of the histogram.
    nb = 1 if per_pixel else max(triton.next_power_of_2(bins), 32 * num_warps)
    _histogram_kernel[(b * c, triton.cdiv(h * w, chunk))](
        planes, out, h * w, c, *planes.stride(), bins, chunk,
        NB=nb, PER_PIXEL=per_pixel, BLOCK=block, num_warps=num_warps, **COMPILE_OPTIONS,
    )  # fmt: skip
    return out.view(b, c, bins)
