"""The compiled CPU loop's plumbing: building C with the system compiler (cache, errors, untrusted cache
directories), the switch to eager torch when it cannot be used, and reads that stay inside the LUT.
Its numbers are tested against the reference in test_apply_lut.py (every test there runs on both loops)."""

from __future__ import annotations

import ctypes
import mmap
import os
import stat
import sys

import pytest
import torch

import lutkern.ops.apply_lut_cpu as cpu_mod
import lutkern.ops.apply_lut_native as native_mod
from lutkern import apply_lut
from lutkern._cbuild import BuildError, build, find_compiler
from lutkern.reference.apply import apply_lut_reference

needs_cc = pytest.mark.skipif(find_compiler() is None, reason="no C compiler on this machine")


@pytest.fixture
def answer_c(tmp_path):
    src = tmp_path / "src" / "answer.c"
    src.parent.mkdir()
    src.write_text("int answer(void) { return 42; }\n")
    return src


@pytest.fixture
def counting_cc(tmp_path):
    """A compiler wrapper that records each call, so a test can see whether a build ran."""
    real = find_compiler()
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "cc-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho call >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, log


def calls(log) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


@needs_cc
def test_build_compiles_once_and_reuses_the_cached_library(answer_c, counting_cc, tmp_path):
    cc, log = counting_cc
    cache = tmp_path / "cache"
    first = build(answer_c, compiler=str(cc), directory=cache)
    again = build(answer_c, compiler=str(cc), directory=cache)
    assert first == again and first.parent == cache
    assert calls(log) == 1
    assert ctypes.CDLL(str(first)).answer() == 42
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert [p.name for p in cache.iterdir()] == [first.name]  # no temporary file left behind
    # An edited source is a different library.
    answer_c.write_text("int answer(void) { return 43; }\n")
    edited = build(answer_c, compiler=str(cc), directory=cache)
    assert edited != first and calls(log) == 2
    assert ctypes.CDLL(str(edited)).answer() == 43


@needs_cc
def test_a_cache_directory_others_can_write_is_not_used(answer_c, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    lib = build(answer_c, directory=shared)
    assert lib.parent != shared and not any(shared.iterdir())
    assert ctypes.CDLL(str(lib)).answer() == 42


@needs_cc
def test_a_cached_library_others_can_write_is_rebuilt_elsewhere(answer_c, counting_cc, tmp_path):
    cc, log = counting_cc
    cache = tmp_path / "cache"
    lib = build(answer_c, compiler=str(cc), directory=cache)
    lib.chmod(0o777)
    again = build(answer_c, compiler=str(cc), directory=cache)
    assert again != lib and again.parent != cache and calls(log) == 2
    assert ctypes.CDLL(str(again)).answer() == 42


def test_missing_compiler_is_a_clear_error(answer_c, tmp_path):
    with pytest.raises(BuildError, match="no-such-cc"):
        build(answer_c, compiler=str(tmp_path / "no-such-cc"), directory=tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())


@needs_cc
def test_compile_error_names_the_file_and_the_message(tmp_path):
    src = tmp_path / "broken.c"
    src.write_text("int broken(void) { return undeclared_name; }\n")
    with pytest.raises(BuildError, match="broken.c") as info:
        build(src, directory=tmp_path / "cache")
    assert "undeclared_name" in str(info.value)


def test_native_switch_and_eager_fallback(monkeypatch):
    image = torch.rand(2, 3, 5, 7)
    lut = torch.rand(2, 4, 4, 4, 3)
    want = apply_lut_reference(image, lut, "tetrahedral")
    monkeypatch.setenv("LUTKERN_NATIVE", "0")
    assert not cpu_mod.native_available()
    # As when no compiler is found: the library is None and the torch backend runs eager ops.
    monkeypatch.delenv("LUTKERN_NATIVE")
    monkeypatch.setattr(native_mod, "library", lambda: None)
    assert not cpu_mod.native_available()
    got = apply_lut(image, lut, interpolation="tetrahedral", backend="torch")
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


@needs_cc
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses mprotect through libc")
@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral", "nearest"])
def test_lookups_do_not_read_past_the_lut(monkeypatch, interpolation):
    """The LUT ends exactly where an inaccessible page begins: a read past its last element would crash.
    Pixels at (1, 1, 1) use the last lattice point, which the loop reads as three lanes, not four; 18
    pixels, so that the vector loop (8 at a time) reads it too."""
    monkeypatch.delenv("LUTKERN_NATIVE", raising=False)
    assert cpu_mod.native_available()
    page = mmap.PAGESIZE
    region = mmap.mmap(-1, 2 * page)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    base = ctypes.addressof(ctypes.c_char.from_buffer(region))
    assert libc.mprotect(base + page, page, 0) == 0, os.strerror(ctypes.get_errno())  # PROT_NONE
    try:
        d = 5
        flat = torch.frombuffer(region, dtype=torch.float32, count=page // 4)
        lut = flat[page // 4 - d**3 * 3 :].view(1, d, d, d, 3)
        lut.copy_(torch.rand(1, d, d, d, 3))
        pixels = torch.tensor([[1.0, 1.0, 1.0], [0.999, 1.0, 1.0], [2.0, 1.5, 1.0]]).repeat(6, 1)  # (P, RGB)
        image = pixels.t().reshape(1, 3, 18, 1).requires_grad_()
        out = apply_lut(image, lut, interpolation=interpolation, backend="torch")
        torch.testing.assert_close(out, apply_lut_reference(image, lut, interpolation), atol=1e-6, rtol=1e-6)
        out.sum().backward()
        del flat, lut
    finally:
        libc.mprotect(base + page, page, 3)  # PROT_READ | PROT_WRITE, so the mapping can be released


@needs_cc
@pytest.mark.parametrize("shared", [False, True], ids=["per-image-luts", "shared-lut"])
@pytest.mark.parametrize("d", [2, 3, 17, 33, 65])
@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral", "nearest"])
def test_vector_loops_give_the_scalar_loops_bits(d, interpolation, shared):
    """Where the CPU has AVX2 the float32 loops do 8 pixels at a time: forward, image gradient and LUT
    gradient must be exactly the scalar loop's bits, at edges, NaN, -0 and ties between fractions
    (tetrahedron boundaries). 17x29 = 493 pixels per image: 7 whole plans of 64 (the forward's two-pass
    blocks), a part plan of 40 and 5 pixels for the scalar loop."""
    if not cpu_mod.native_available() or not cpu_mod.has_simd():
        pytest.skip("this CPU has no vector path (AVX2)")
    g = torch.Generator().manual_seed(d)
    image = torch.rand(3, 3, 17, 29, generator=g) * 1.4 - 0.2
    image[0, :, 0, :5] = torch.tensor([0.0, -0.0, 1.0, float("nan"), float("inf")])
    image[1, :, 3, :8] = 0.5  # all three fractions equal
    image[2, 0, 5, :16] = image[2, 1, 5, :16]  # r and g fractions equal
    image[2, 2, 6, :16] = image[2, 0, 6, :16]  # b and r fractions equal
    lut = torch.randn(1 if shared else 3, d, d, d, 3, generator=g)
    lut[0, 0, 0, 0, 0] = -0.0
    go = torch.randn(3, 3, 17, 29, generator=g)
    results = []
    for simd in (True, False):
        i, t = image.clone().requires_grad_(), lut.clone().requires_grad_()
        out = cpu_mod.apply_lut_cpu(i, t, interpolation, simd=simd)
        results.append((out, *torch.autograd.grad(out, (i, t), go)))
    for fast, scalar in zip(*results, strict=True):
        assert torch.equal(fast.view(torch.int32), scalar.view(torch.int32))
    want = apply_lut_reference(image, lut, interpolation)
    torch.testing.assert_close(results[0][0], want, atol=1e-5, rtol=1e-5, equal_nan=True)


@needs_cc
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral", "nearest"])
@pytest.mark.parametrize("simd", [True, False], ids=["vector", "scalar"])
def test_codes_in_one_pass_are_the_planar_loops_bits(monkeypatch, dtype, interpolation, simd):
    """grade_codes on interleaved integer codes equals converting them to float32 planes (code / top),
    the loop, and rounding back (lutkern.imageio.to_integer_array): bitwise, on every code of both ends,
    across the 1024-pixel blocks of the C loop and the chunks of several workers, with a LUT whose values
    leave [0, 1] (clamped)."""
    import numpy as np

    from lutkern.imageio import codes_to_pixels, to_integer_array

    if not cpu_mod.native_available():
        pytest.skip("no C compiler")
    monkeypatch.setattr(native_mod, "cpu_workers", lambda: 2)
    monkeypatch.setattr(native_mod, "CHUNK", 1000)  # chunks that split the C loop's blocks
    monkeypatch.setattr(native_mod, "MIN_WORK", 1)
    top = 255 if dtype == "uint8" else 65535
    rng = np.random.default_rng(3)
    codes = rng.integers(0, top + 1, (41, 67, 3)).astype(dtype)  # 2747 pixels: blocks and a ragged end
    codes[0, :3] = [[0, 0, 0], [top, top, top], [0, top, 0]]
    lut = torch.rand(9, 9, 9, 3, generator=torch.Generator().manual_seed(4)) * 1.4 - 0.2
    depth = 8 if dtype == "uint8" else 16
    want = to_integer_array(cpu_mod.apply_lut_cpu(codes_to_pixels(codes, depth)[None], lut[None],
                                                  interpolation, simd=simd)[0], depth)
    got = codes.copy()
    native_mod.grade_codes(got, lut.numpy(), interpolation, simd=simd)
    np.testing.assert_array_equal(got, want)
    assert (got == 0).any() and (got == top).any()  # the clamp was exercised
