"""The table of every 8-bit colour graded (lutkern.ops.apply_lut_native.every_code_graded) and the grader that
switches to it for a run of images (lutkern.grading.CodesGrader): every looked-up code is the compiled
loop's own (grade_codes, itself tested against the planar loops and the reference in test_cpu_loop.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lutkern.grading as grading
import lutkern.ops.apply_lut_native as native_mod
from lutkern.cube import CubeLUT

pytestmark = pytest.mark.skipif(not native_mod.native_available(), reason="no C compiler")


def _lut(seed: int, d: int = 9) -> np.ndarray:
    """A LUT whose values leave [0, 1] (clamped when graded to codes)."""
    return (np.random.default_rng(seed).random((d, d, d, 3)) * 1.4 - 0.2).astype(np.float32)


def _frames(n: int, seed: int, h: int = 20, w: int = 30, dtype=np.uint8) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    frames = [rng.integers(0, top + 1, (h, w, 3)).astype(dtype) for _ in range(n)]
    frames[0][0, :4] = [[0, 0, 0], [top, top, top], [top, 0, 0], [0, 0, top]]
    return frames


@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral", "nearest"])
def test_every_code_looked_up_is_what_the_loop_gives(interpolation):
    lut = _lut(1)
    graded = native_mod.every_code_graded(lut, interpolation)
    assert graded.shape == (256, 256, 256, 3) and graded.dtype == np.uint8
    codes = _frames(1, 2, 37, 53)[0]  # odd sizes; r, g and b drawn apart, so a swapped index shows
    want, got = codes.copy(), codes.copy()
    native_mod.grade_codes(want, lut, interpolation)
    native_mod.look_up_codes(got, graded)
    np.testing.assert_array_equal(got, want)
    assert (got == 0).any() and (got == 255).any()  # the clamp was exercised


def test_look_up_refuses_what_the_table_cannot_hold():
    graded = np.zeros((256, 256, 256, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8, got uint16"):
        native_mod.look_up_codes(np.zeros((2, 2, 3), np.uint16), graded)
    with pytest.raises(ValueError, match="C-contiguous"):
        native_mod.look_up_codes(np.zeros((2, 4, 3), np.uint8)[:, ::2], graded)
    with pytest.raises(ValueError, match=r"graded must be .* \(17, 17, 17, 3\)"):
        native_mod.look_up_codes(np.zeros((2, 2, 3), np.uint8), np.zeros((17, 17, 17, 3), np.uint8))


@pytest.fixture
def table_spies(monkeypatch):
    """``{"built": n, "looked up": n}``, counted, with the switch after three frames of 20x30."""
    monkeypatch.setattr(grading, "ALL_CODES", 3 * 20 * 30)
    counts = {"built": 0, "looked up": 0}
    for name, key in (("every_code_graded", "built"), ("look_up_codes", "looked up")):
        real = getattr(grading, name)

        def counted(*args, _real=real, _key=key):
            counts[_key] += 1
            return _real(*args)

        monkeypatch.setattr(grading, name, counted)
    return counts


@pytest.mark.parametrize("kind", ["numpy table", "CubeLUT"])
def test_grader_looks_up_once_it_has_graded_as_many_pixels_as_colours(table_spies, kind):
    """A .cube's numpy table (the torch-free path) and its CubeLUT (the torch path) alike."""
    table = _lut(3)
    lut = table if kind == "numpy table" else CubeLUT(torch.from_numpy(table))
    grader = grading.CodesGrader(lut, interpolation="tetrahedral")
    for i, frame in enumerate(_frames(6, 4)):
        want = frame.copy()
        native_mod.grade_codes(want, table, "tetrahedral")
        np.testing.assert_array_equal(grader(frame), want)
        assert table_spies == {"built": int(i >= 3), "looked up": max(0, i - 2)}


def test_grader_interpolates_what_the_table_cannot_grade(table_spies, monkeypatch):
    """Deeper codes, a LUT the one-pass loop cannot apply (float64), 10-bit codes: grade_codes every time."""
    monkeypatch.setattr(grading, "ALL_CODES", 1)
    table = _lut(5)
    grader = grading.CodesGrader(table)
    for frame in _frames(3, 6, dtype=np.uint16):
        want = frame.copy()
        native_mod.grade_codes(want, table)
        np.testing.assert_array_equal(grader(frame), want)
    wide = CubeLUT(torch.from_numpy(table).double())
    wide_grader = grading.CodesGrader(wide)
    for frame in _frames(3, 7):
        np.testing.assert_array_equal(wide_grader(frame.copy()), grading.grade_codes(frame, wide))
    for frame in _frames(2, 8, dtype=np.uint16):
        frame >>= 6  # 10-bit codes in uint16
        want = grading.grade_codes(frame.copy(), table, bit_depth=10)
        np.testing.assert_array_equal(grader(frame, bit_depth=10), want)
    assert table_spies == {"built": 0, "looked up": 0}
