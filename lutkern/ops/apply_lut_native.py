"""The compiled library of ``apply_lut_cpu.c``, loaded without torch, and its integer-code entry point.

:mod:`lutkern.ops.apply_lut_cpu` drives the float loops on torch tensors; :func:`grade_codes` here grades
interleaved integer codes in numpy arrays, which is all ``python -m lutkern.apply`` needs on the CPU for
8 and 16-bit images and video frames, so that command can run without importing torch. The library is
built on first use with the system C compiler (:mod:`lutkern._cbuild`) and called through ctypes, which
releases the GIL; ``LUTKERN_NATIVE=0`` switches it off.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .._cbuild import BuildError, build

SOURCE = Path(__file__).with_name("apply_lut_cpu.c")
INCLUDES = (Path(__file__).with_name("apply_lut_cpu_generic.h"),)
CODES = {"trilinear": 0, "tetrahedral": 1, "nearest": 2}  # the C loop's interpolation numbers
SUFFIXES = ("f32", "f64")  # the float loops: lut_forward_f32, lut_backward_f64, ...
CHUNK = 1 << 16  # pixels per call: large enough that the per-call overhead (~10 us) is negligible
MIN_WORK = 1 << 16  # pixels per worker thread at least: below that a second thread costs more than it saves
_I64, _PTR = ctypes.c_int64, ctypes.c_void_p
_FORWARD_ARGS = [_PTR, _I64, _PTR, _I64, _I64, _PTR, _I64, ctypes.c_int, ctypes.c_int]
_BACKWARD_ARGS = [_PTR, _I64, _PTR, _I64, _PTR, _I64, _PTR, _I64, _PTR, _I64, ctypes.c_int, ctypes.c_int]
_log = logging.getLogger("lutkern")


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None (logged once) when they cannot be built or loaded."""
    try:
        lib = ctypes.CDLL(str(build(SOURCE, INCLUDES)))
    except (BuildError, OSError) as exc:
        _log.info("lutkern: compiled CPU loop unavailable, using the eager torch fallback (%s)", exc)
        return None
    for suffix in SUFFIXES:
        getattr(lib, f"lut_forward_{suffix}").argtypes = _FORWARD_ARGS
        getattr(lib, f"lut_backward_{suffix}").argtypes = _BACKWARD_ARGS
    lib.lut_grade_codes.argtypes = [_PTR, ctypes.c_int, _I64, _PTR, _I64, ctypes.c_int, ctypes.c_int]
    lib.lut_look_up_u8.argtypes = [_PTR, _I64, _PTR]
    return lib


def native_available() -> bool:
    """True when the compiled CPU loop is enabled (``LUTKERN_NATIVE`` is not 0) and builds."""
    if os.environ.get("LUTKERN_NATIVE", "1").strip() == "0":
        return False
    return library() is not None


def has_simd() -> bool:
    """True when the float32 loops run 8 pixels at a time (x86-64 with AVX2)."""
    return bool(library().lut_has_simd())


def cpu_workers() -> int:
    """The CPUs this process may run on (the worker threads of :func:`grade_codes`)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def grade_codes(codes: np.ndarray, table: np.ndarray, interpolation: str = "trilinear", *,
                simd: bool = True) -> None:
    """Grade ``codes`` ``(..., 3)`` (C-contiguous interleaved RGB, uint8 or uint16 on its full scale) in place
    with one LUT ``table`` ``(D,D,D,3)`` (float32, C-contiguous, ``[b, g, r, c]``) in one pass (needs
    :func:`native_available`): bitwise what converting to float32 planes, the float loop and
    :func:`lutkern.imageio.to_integer_array` give (code / top, clamp to [0, 1], round half to even), at a
    fraction of the memory traffic. Chunks of :data:`CHUNK` pixels are dealt to the worker threads."""
    if not codes.flags.c_contiguous or codes.dtype not in (np.uint8, np.uint16) or codes.shape[-1] != 3:
        raise ValueError(f"codes must be C-contiguous (..., 3) uint8 or uint16, got {codes.dtype} "
                         f"{codes.shape}")
    d = table.shape[0]
    if table.dtype != np.float32 or not table.flags.c_contiguous or table.shape != (d, d, d, 3):
        raise ValueError(f"table must be C-contiguous (D,D,D,3) float32, got {table.dtype} {table.shape}")
    fn, code, size = library().lut_grade_codes, CODES[interpolation], codes.dtype.itemsize
    pixels, base, lut = codes.size // 3, codes.ctypes.data, table.ctypes.data
    chunks = [(p, min(p + CHUNK, pixels)) for p in range(0, pixels, CHUNK)]
    workers = max(1, min(cpu_workers(), len(chunks), pixels // MIN_WORK))

    def work(w: int) -> None:
        for start, stop in chunks[w::workers]:
            fn(base + start * 3 * size, size, stop - start, lut, d, code, int(simd))

    if workers == 1:
        work(0)
        return
    with ThreadPoolExecutor(workers) as pool:
        for fut in [pool.submit(work, w) for w in range(workers)]:
            fut.result()


ALL_CODES = 1 << 24  # the 8-bit colours: 256^3


def every_code_graded(table: np.ndarray, interpolation: str = "trilinear") -> np.ndarray:
    """Every 8-bit colour graded by :func:`grade_codes` with ``table``: ``(256,256,256,3)`` uint8 indexed
    ``[b, g, r]`` (red fastest, as a LUT), 48 MiB; built in about the time :func:`grade_codes` takes for
    :data:`ALL_CODES` pixels (0.3-0.5 s on two cores)."""
    graded = np.empty((256, 256, 256, 3), np.uint8)
    codes = np.arange(256, dtype=np.uint8)
    graded[..., 0], graded[..., 1], graded[..., 2] = codes, codes[:, None], codes[:, None, None]
    grade_codes(graded, table, interpolation)
    return graded


def look_up_codes(codes: np.ndarray, graded: np.ndarray) -> None:
    """Grade 8-bit ``codes`` ``(..., 3)`` (C-contiguous interleaved RGB) in place by looking each pixel up in
    ``graded`` (:func:`every_code_graded`): the codes :func:`grade_codes` gives, bit for bit, since a
    pixel's result depends on its codes alone; one memory read per pixel instead of an interpolation. One
    thread: a second one made a 720p frame slower (4.5 ms against 1.8-2.8 ms; the reads wait on memory)."""
    if not codes.flags.c_contiguous or codes.dtype != np.uint8 or codes.shape[-1] != 3:
        raise ValueError(f"codes must be C-contiguous (..., 3) uint8, got {codes.dtype} {codes.shape}")
    if graded.shape != (256, 256, 256, 3) or graded.dtype != np.uint8 or not graded.flags.c_contiguous:
        raise ValueError(f"graded must be C-contiguous (256,256,256,3) uint8, got {graded.dtype} "
                         f"{graded.shape}")
    library().lut_look_up_u8(codes.ctypes.data, codes.size // 3, graded.ctypes.data)
