"""The grade families of img2lut.grades and the statistics they read (img2lut.image_stats), each checked
against numpy's quantiles or a hand computation, never against the module's own helpers."""

import math

import numpy as np
import pytest
import torch

import lutkern
from img2lut.grades import FAMILIES, Grade, grade_lut, grade_of
from img2lut.image_stats import (
    JOINT,
    NORMALISERS,
    QUANTILES,
    STATS_DIM,
    codes_stats,
    image_stats,
    levels_curve,
)
from lutkern.reference.apply import apply_lut_reference


def _codes(seed: int, shape=(3, 37, 53), depth: int = 8) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    top = (1 << depth) - 1
    skew = torch.tensor([0.4, 1.0, 2.5]).view(3, 1, 1)
    return (torch.rand(shape, generator=gen) ** skew * 0.8 * top + 0.1 * top).round()


def _np_quantile(channel: np.ndarray, q: float) -> float:
    return float(np.quantile(channel, q, method="inverted_cdf"))


@pytest.mark.parametrize("depth", [8, 16])
def test_quantiles_and_moments_are_numpys(depth):
    codes = _codes(1, depth=depth)
    top = (1 << depth) - 1
    stats = image_stats((codes / top).unsqueeze(0)) if depth == 8 else None
    from_codes = codes_stats(codes.permute(1, 2, 0).numpy().astype(np.uint8 if depth == 8 else np.uint16),
                             depth)
    assert from_codes.shape == (1, STATS_DIM)
    flat = codes.reshape(3, -1).numpy()
    q = from_codes[0, :3 * len(QUANTILES)].view(3, len(QUANTILES))
    for c in range(3):
        want = [_np_quantile(flat[c], level) / top for level in QUANTILES]
        torch.testing.assert_close(q[c], torch.tensor(want, dtype=torch.float32), atol=1e-7, rtol=0)
    n = 3 * len(QUANTILES)
    as_float = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    torch.testing.assert_close(from_codes[0, n:n + 3], as_float(flat.mean(1) / top))
    torch.testing.assert_close(from_codes[0, n + 3:n + 6], as_float(flat.std(1) / top))
    pixels = flat / top
    sat = pixels.max(0) - pixels.min(0)
    joint = from_codes[0, n + 6:]
    assert len(joint) == len(JOINT)
    torch.testing.assert_close(joint[:2], torch.tensor([sat.mean(), sat.std()], dtype=torch.float32))
    corr = np.corrcoef(pixels)
    torch.testing.assert_close(joint[3:], torch.tensor([corr[0, 1], corr[1, 2], corr[2, 0]],
                                                        dtype=torch.float32), atol=1e-5, rtol=0)
    if stats is not None:  # an 8-bit image as floats: the same statistics as its codes
        torch.testing.assert_close(stats, from_codes, atol=1e-6, rtol=0)


def test_levels_curve_by_hand():
    x = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.9, 1.0]).view(1, 1, 6).expand(1, 3, 6)
    lo, hi = torch.tensor([[0.1, 0.0, 0.2]]), torch.tensor([[0.9, 0.5, 0.2]])
    gamma = torch.tensor([[1.0, 2.0, 1.0]])
    out = levels_curve(x, lo, hi, gamma)[0]
    torch.testing.assert_close(out[0], torch.tensor([0.0, 0.0, 0.25, 0.5, 1.0, 1.0]))
    torch.testing.assert_close(out[1], torch.tensor([0.0, 0.04, 0.36, 1.0, 1.0, 1.0]))
    # A flat channel (hi == lo) is kept finite: its range is at least 1/64.
    assert torch.isfinite(out[2]).all() and out[2, 0] == 0 and out[2, -1] == 1


def _reference_grade(codes: torch.Tensor, family: str) -> Grade:
    """Each family's rule, recomputed from numpy's statistics of the 8-bit codes."""
    flat = codes.reshape(3, -1).numpy() / 255
    mean = flat.mean(1)
    q = lambda level: tuple(float(np.quantile(c, level, method="inverted_cdf")) for c in flat)  # noqa: E731
    ones, zeros = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
    gamma_to_half = lambda v: min(max(math.log(0.5) / math.log(min(max(v, 1e-3), 1 - 1e-3)), 1 / 3), 3)  # noqa: E731
    if family == "grey_world":
        gain = [min(max(0.45 / m, 1 / 2.5), 2.5) for m in mean]
        luma = 0.2126 * mean[0] + 0.7152 * mean[1] + 0.0722 * mean[2]
        strength = min(max(1.1 - 1.4 * luma, 0.2), 1)
        return Grade(zeros, tuple(1 / g for g in gain), ones, "teal_orange", strength)
    if family == "levels":
        return Grade(q(0.005), q(0.995), ones, "teal_orange", 1.0)
    if family == "auto_gamma":
        return Grade(zeros, ones, tuple(gamma_to_half(m) for m in mean), "faded_warm", 1.0)
    if family == "extremes":
        return Grade(tuple(flat.min(1)), tuple(flat.max(1)), ones, "cool_contrast", 1.0)
    if family == "saturation":
        sat = float((flat.max(0) - flat.min(0)).mean())
        return Grade(zeros, ones, ones, "teal_orange", min(max(1.2 - 4 * sat, 0.0), 1.0))
    if family == "levels_gamma":
        lo, hi = q(0.003), q(0.997)
        levelled = [min(max((m - a) / max(b - a, 1 / 64), 1e-3), 1 - 1e-3)
                    for a, b, m in zip(lo, hi, mean, strict=True)]
        gamma = tuple(min(max(math.log(0.45) / math.log(v), 1 / 3), 3) for v in levelled)
        return Grade(lo, hi, gamma, "faded_warm", 0.8)
    lo, hi, med = q(0.01), q(0.99), q(0.5)
    gamma = tuple(gamma_to_half(min(max((m - a) / max(b - a, 1 / 64), 0), 1))
                  for a, b, m in zip(lo, hi, med, strict=True))
    return Grade(lo, hi, gamma, "cool_contrast", 0.7)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_reads_its_statistic(family):
    codes = _codes(7)
    got, want = grade_of(codes / 255, family), _reference_grade(codes, family)
    assert got.look == want.look
    for field in ("lo", "hi", "gamma"):
        assert getattr(got, field) == pytest.approx(getattr(want, field), abs=1e-6), field
    assert got.strength == pytest.approx(want.strength, abs=1e-6)


def test_the_families_differ_on_one_photo():
    codes = _codes(2)
    luts = [grade_lut(grade_of(codes / 255, family), 5) for family in FAMILIES]
    for i in range(len(luts)):
        for j in range(i):
            assert (luts[i] - luts[j]).abs().max() > 0.02, (FAMILIES[i], FAMILIES[j])


def test_grade_lut_is_levels_then_the_look_blended_by_strength():
    grade = Grade((0.1, 0.0, 0.05), (0.8, 1.0, 0.6), (1.0, 2.0, 0.5), "teal_orange", 0.4)
    lut = grade_lut(grade, 9)
    points = lutkern.identity_lut(9, dtype=torch.float64).reshape(-1, 3)  # rows r, g, b
    levelled = torch.stack([((points[:, c] - grade.lo[c]) / (grade.hi[c] - grade.lo[c])).clamp(0, 1)
                            ** grade.gamma[c] for c in range(3)], 1)
    look = lutkern.looks["teal_orange"](size=17, dtype=torch.float64)  # twice the resolution, as built
    looked = apply_lut_reference(levelled.T.reshape(1, 3, 1, -1), look[None]).reshape(3, -1).T
    torch.testing.assert_close(lut.reshape(-1, 3), (0.6 * levelled + 0.4 * looked).float(), atol=1e-6, rtol=0)


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown grade family"):
        grade_of(torch.rand(3, 4, 4), "vintage")


@pytest.mark.parametrize("name", ["levels_1+median_gamma", "levels_0.1+auto_gamma", "stretch", "median_gamma",
                                  "levels_5"])
def test_each_correction_is_its_levels_then_its_gamma(name):
    """A correction of the searched space, from numpy's statistics: levels at p% (stretch: min / max),
    then the gamma taking the levelled mean (auto_gamma, levelled as a value) or median to 0.5."""
    codes = _codes(7)
    flat = codes.reshape(3, -1).numpy() / 255
    levels, _, gamma = name.partition("+")
    if levels == "median_gamma":
        levels, gamma = "none", "median_gamma"
    p = {"none": None, "stretch": 0.0, "levels_0.1": 0.001, "levels_1": 0.01, "levels_5": 0.05}[levels]
    lo = [0.0] * 3 if p is None else [_np_quantile(c, p) for c in flat]
    hi = [1.0] * 3 if p is None else [_np_quantile(c, 1 - p) for c in flat]
    source = {"": None, "auto_gamma": flat.mean(1),
              "median_gamma": [_np_quantile(c, 0.5) for c in flat]}[gamma]
    want_gamma = [1.0] * 3 if source is None else [
        min(max(math.log(0.5) / math.log(min(max((s - a) / max(b - a, 1 / 64), 1e-3), 1 - 1e-3)), 1 / 3), 3)
        for s, a, b in zip(source, lo, hi, strict=True)]
    got = NORMALISERS[name](image_stats((codes / 255).unsqueeze(0)))
    for value, want in zip(got, (lo, hi, want_gamma), strict=True):
        torch.testing.assert_close(value[0], torch.tensor(want, dtype=torch.float32), atol=1e-6, rtol=1e-5)


def test_the_correction_space_is_every_levels_alone_and_with_every_gamma():
    levels = ("stretch", "levels_0.1", "levels_0.5", "levels_1", "levels_2", "levels_5")
    gammas = ("auto_gamma", "median_gamma")
    want = {"none", "grey_world", *gammas, *levels, *(f"{lv}+{g}" for lv in levels for g in gammas)}
    assert set(NORMALISERS) == want
