"""Per-channel histograms of CPU tensors by a compiled C loop (``histogram_cpu.c``): what
:func:`lutkern.channel_histogram` runs on the CPU.

Eager torch makes several passes over memory per value (clamp, scale, round, an int64 index, the NaN
mask, bincount); the C loop reads each value once and counts it in small private tables. Planes are cut
into chunks dealt to the worker threads by the plan of :mod:`lutkern.ops.chunks`; each call adds its
tables to its plane's row of the output with atomic integer adds, exact whatever the order, so the counts
are deterministic. Built on first use with the system C compiler (:mod:`lutkern._cbuild`) and called
through ctypes, which releases the GIL. Without a C compiler, or with ``LUTKERN_NATIVE=0``, the torch ops
of :mod:`lutkern.ops.histogram_torch` run instead (the same counts).

float32 and float64 values are binned in their own precision, float16/bfloat16 ones converted to float32
chunk by chunk (exact); integer codes (uint8, int16, int32, int64) are read as they are. Planes are read
in place when each image's ``H x W`` pixels lie at one stride (contiguous or channels-last tensors, such as
decoded ``(H,W,3)`` arrays permuted to ``(3,H,W)``), else from a contiguous copy.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from pathlib import Path

import torch

from .._cbuild import BuildError, build
from .chunks import run_plan, schedule

SOURCE = Path(__file__).with_name("histogram_cpu.c")
CHUNK = 1 << 18  # pixels per call at least: the per-call overhead (~10 us) stays below 5%
MIN_WORK = 1 << 18  # pixels per worker thread at least: a thread costs ~0.2 ms
_SUFFIX = {torch.float32: "f32", torch.float64: "f64", torch.float16: "f32", torch.bfloat16: "f32",
           torch.uint8: "u8", torch.int16: "i16", torch.int32: "i32", torch.int64: "i64"}
_I64, _PTR = ctypes.c_int64, ctypes.c_void_p
_log = logging.getLogger("lutkern")


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The compiled loop, or None (logged once) when it cannot be built or loaded."""
    try:
        lib = ctypes.CDLL(str(build(SOURCE)))
    except (BuildError, OSError) as exc:
        _log.info("lutkern: compiled histogram loop unavailable, using torch ops (%s)", exc)
        return None
    for suffix in set(_SUFFIX.values()):
        fn = getattr(lib, f"histogram_{suffix}")
        fn.argtypes, fn.restype = [_PTR, _I64, _I64, _I64, _PTR], ctypes.c_int
    return lib


def native_available() -> bool:
    """True when the compiled loop is enabled (``LUTKERN_NATIVE`` is not 0) and builds."""
    if os.environ.get("LUTKERN_NATIVE", "1").strip() == "0":
        return False
    return _library() is not None


def chunk_pixels(bins: int) -> int:
    """Pixels per call: enough that the call's tables (up to 4 x ``bins`` counters, zeroed and summed once)
    cost little beside the counting."""
    return max(CHUNK, 16 * bins)


def channel_histogram_cpu(images: torch.Tensor, bins: int) -> torch.Tensor:
    """``(B,C,bins)`` int64 counts of the CPU tensor ``images`` ``(B,C,H,W)`` (checked by the caller,
    integer codes in ``[0, bins)``; needs :func:`native_available`), with the conventions of
    :func:`lutkern.channel_histogram`."""
    b, c = images.shape[:2]
    planes = images.flatten(2)  # (B,C,H*W): a view unless H and W cannot share one stride
    out = torch.zeros(b * c, bins, dtype=torch.int64)
    fn = getattr(_library(), f"histogram_{_SUFFIX[images.dtype]}")
    convert = images.dtype in (torch.float16, torch.bfloat16)

    def chunk(_, job):
        i, _, sl = job
        x = planes[i // c, i % c, sl]
        x = x.float() if convert else x
        rc = fn(x.data_ptr(), x.stride(0), x.shape[0], bins, out[i].data_ptr())
        if rc:
            why = "out of memory" if rc == -1 else "arguments out of range"
            raise RuntimeError(f"compiled histogram loop failed ({why}): {x.shape[0]} pixels, {bins} bins")

    plan = schedule(b * c, 1, planes.shape[2], images.device, chunk_pixels(bins), MIN_WORK)
    run_plan(chunk, plan)
    return out.view(b, c, bins)
