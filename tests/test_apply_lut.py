"""apply_lut on the torch backend, on both of its CPU loops (the compiled C loop and eager torch ops):
against the plain reference, against the seed's ``F.grid_sample`` formula (trilinear) and against an
independent per-pixel evaluation of the six tetrahedra in plain Python; forward, image gradient and LUT
gradient; edge values; dtypes; input errors.

LUTs here are "graded" (a gamma, a colour mix and a gentle wave on top of the identity), not random
noise. Implementations compute the lattice coordinate with different float operations (``x*(D-1)`` vs
grid_sample's ``((2x-1)+1)/2*(D-1)``), which differ by about one ulp of the coordinate; the output then
differs by that times the LUT's slope per cell. A real grade keeps that slope small, so 1e-6 in fp32
is a meaningful bound; a random-valued LUT (slope ~1 per cell) would make it meaningless.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lutkern.ops.apply_lut_cpu as cpu_mod
import lutkern.ops.apply_lut_torch as fast_mod
from lutkern import apply_lut, identity_lut
from lutkern._cbuild import find_compiler
from lutkern.reference.apply import apply_lut_reference

INTERPOLATIONS = ("trilinear", "tetrahedral", "nearest")
SIZES = (2, 3, 17, 33)
FP32 = {"atol": 1e-6, "rtol": 1e-6}
# Per-dtype tolerances of a half-precision result against the fp32 result of the same (rounded) inputs:
# the output is rounded once to the dtype (half an ulp at 1.0 is 4.9e-4 for fp16, 3.9e-3 for bf16).
HALF = {torch.float16: {"atol": 1e-3, "rtol": 1e-3}, torch.bfloat16: {"atol": 8e-3, "rtol": 8e-3}}


@pytest.fixture(autouse=True, params=["compiled", "eager"])
def cpu_loop(request, monkeypatch):
    """Every test runs on both CPU loops of the torch backend: the compiled C loop and eager torch ops."""
    if request.param == "eager":
        monkeypatch.setenv("LUTKERN_NATIVE", "0")
        return request.param
    monkeypatch.delenv("LUTKERN_NATIVE", raising=False)
    if find_compiler() is None:
        pytest.skip("no C compiler on this machine: the compiled CPU loop cannot be built")
    assert cpu_mod.native_available(), "a C compiler is present but the CPU loop did not build (see the log)"
    return request.param


def fallback(image, lut, interpolation):
    """The torch backend (the CPU loop chosen by the ``cpu_loop`` fixture)."""
    return apply_lut(image, lut, interpolation=interpolation, backend="torch")


def graded_lut(d: int, n: int | None = None, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """``(n,D,D,D,3)`` (or ``(D,D,D,3)`` for n=None) smooth, different LUTs with realistic slopes."""
    g = torch.Generator().manual_seed(seed)
    ident = identity_lut(d, dtype=torch.float64)
    luts = []
    for _ in range(n or 1):
        gamma = 0.7 + 0.6 * torch.rand(3, generator=g, dtype=torch.float64)
        mix = torch.eye(3, dtype=torch.float64) + 0.2 * torch.randn(3, 3, generator=g, dtype=torch.float64)
        freq = torch.rand(3, 3, generator=g, dtype=torch.float64)
        luts.append(ident**gamma @ mix.T + 0.05 * torch.sin(2 * math.pi * ident @ freq))
    out = torch.stack(luts).to(dtype)
    return out if n is not None else out[0]


def interior_image(n: int, h: int, w: int, d: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Pixels inside cells, at least 0.05 cell from every lattice plane and with distinct fractions, so
    that the piecewise derivatives are unambiguous and finite differences / gradcheck are valid."""
    g = torch.Generator().manual_seed(seed)
    cell = torch.randint(0, d - 1, (n, 3, h, w), generator=g).to(dtype)
    frac = 0.05 + 0.9 * torch.rand(n, 3, h, w, generator=g, dtype=dtype)
    # Keep the three fractions of a pixel apart too (tetrahedron boundaries are where two are equal).
    frac[:, 1] = torch.where(
        (frac[:, 1] - frac[:, 0]).abs() < 0.05, (frac[:, 1] + 0.3) % 0.9 + 0.05, frac[:, 1]
    )
    for other in (0, 1):
        close = (frac[:, 2] - frac[:, other]).abs() < 0.05
        frac[:, 2] = torch.where(close, (frac[:, 2] + 0.3) % 0.9 + 0.05, frac[:, 2])
    return (cell + frac) / (d - 1)


def grads(fn, image, lut, go):
    """(output, d loss/d image, d loss/d lut) of ``(fn(image, lut) * go).sum()``."""
    image = image.detach().clone().requires_grad_()
    lut = lut.detach().clone().requires_grad_()
    out = fn(image, lut)
    gi, gl = torch.autograd.grad(out, (image, lut), go, materialize_grads=True)
    return out.detach(), gi, gl


def seed_grid_sample(image: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """The seed experiment's trilinear interpolation, verbatim in substance."""
    grid = ((image - 0.5) * 2.0).permute(0, 2, 3, 1).unsqueeze(1)
    out = F.grid_sample(
        lut.permute(0, 4, 1, 2, 3), grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return out.squeeze(2)


def tetra_python(rgb, lut, d):
    """One pixel by the six-tetrahedra rule in plain Python floats.

    Returns (value [3], {(r, g, b) lattice point: weight}). The vertices follow the path from the cell
    origin stepping the axes in order of decreasing fraction.
    """
    coords = [min(max(v, 0.0), 1.0) * (d - 1) for v in rgb]
    base = [min(int(math.floor(c)), d - 2) for c in coords]
    frac = [c - b for c, b in zip(coords, base, strict=True)]
    order = sorted(range(3), key=lambda a: -frac[a])
    vertex = list(base)
    path = [tuple(vertex)]
    for axis in order:
        vertex[axis] += 1
        path.append(tuple(vertex))
    f_sorted = [frac[a] for a in order]
    weights = [1 - f_sorted[0], f_sorted[0] - f_sorted[1], f_sorted[1] - f_sorted[2], f_sorted[2]]
    value = [0.0, 0.0, 0.0]
    for (r, g, b), wgt in zip(path, weights, strict=True):
        for c in range(3):
            value[c] += wgt * float(lut[b, g, r, c])
    return value, dict(zip(path, weights, strict=True))


# ----------------------------------------------------------------------------------------- forward


@pytest.mark.parametrize("d", SIZES)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("hw", [(1, 1), (17, 23)])
def test_fallback_matches_reference(d, interpolation, hw):
    torch.manual_seed(d)
    image = torch.rand(3, 3, *hw)
    lut = graded_lut(d, 3, seed=d)
    go = torch.randn(3, 3, *hw)
    ref = grads(lambda i, t: apply_lut_reference(i, t, interpolation), image, lut, go)
    got = grads(lambda i, t: apply_lut(i, t, interpolation=interpolation, backend="torch"), image, lut, go)
    tol = {"atol": 0, "rtol": 0} if interpolation == "nearest" else FP32
    torch.testing.assert_close(got[0], ref[0], **tol)
    # Gradients sum many terms (LUT) or are slopes times D-1 (image): relative tolerance.
    torch.testing.assert_close(got[1], ref[1], atol=1e-5 * (d - 1), rtol=1e-5)
    torch.testing.assert_close(got[2], ref[2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("d", SIZES)
def test_trilinear_matches_seed_grid_sample(d):
    image = interior_image(2, 17, 23, d).float()
    lut = graded_lut(d, 2, seed=10 + d)
    go = torch.randn(2, 3, 17, 23, generator=torch.Generator().manual_seed(d))
    want = grads(seed_grid_sample, image, lut, go)
    for fn in (lambda i, t: apply_lut(i, t, backend="torch"), lambda i, t: apply_lut_reference(i, t)):
        got = grads(fn, image, lut, go)
        torch.testing.assert_close(got[0], want[0], **FP32)
        torch.testing.assert_close(got[1], want[1], atol=1e-5 * (d - 1), rtol=1e-5)
        torch.testing.assert_close(got[2], want[2], atol=1e-5, rtol=1e-5)


def test_trilinear_matches_grid_sample_on_edges_forward():
    """Forward only: at 0, 1 and outside, grid_sample's border padding clamps like we do (its image gradient
    is zero exactly at the border, where torch.clamp semantics use the edge cell's slope instead)."""
    d = 9
    vals = torch.tensor(
        [-0.5, -1e-9, 0.0, 1e-7, 0.5, 1 - 1e-7, 1.0, 1.0 + 1e-6, 3.0, float("inf"), -float("inf")]
    )
    g = torch.Generator().manual_seed(1)
    image = vals[torch.randint(0, len(vals), (2, 3, 6, 7), generator=g)]
    lut = graded_lut(d, 2, seed=3)
    torch.testing.assert_close(apply_lut(image, lut, backend="torch"), seed_grid_sample(image, lut), **FP32)


@pytest.mark.parametrize("d", [2, 3, 17, 33])
def test_tetrahedral_matches_python_six_tetrahedra(d):
    g = torch.Generator().manual_seed(d)
    image = interior_image(2, 2, 3, d, seed=d)
    # A few pixels on the edges and outside too (forward is continuous, so no tie ambiguity).
    image[0, :, 0, 0] = torch.tensor([0.0, 1.0, 0.5])
    image[1, :, 1, 2] = torch.tensor([-0.2, 1.3, 1.0])
    lut = graded_lut(d, 2, seed=20 + d, dtype=torch.float64)
    go = torch.randn(2, 3, 2, 3, generator=g, dtype=torch.float64)
    out, g_img, g_lut = grads(
        lambda i, t: apply_lut(i, t, interpolation="tetrahedral", backend="torch"), image, lut, go
    )
    want_lut = torch.zeros_like(lut)
    for n in range(2):
        for y in range(2):
            for x in range(3):
                rgb = image[n, :, y, x].tolist()
                value, weights = tetra_python(rgb, lut[n], d)
                torch.testing.assert_close(out[n, :, y, x], torch.tensor(value, dtype=torch.float64))
                for (r, gg, b), wgt in weights.items():
                    want_lut[n, b, gg, r] += wgt * go[n, :, y, x]
                if (n, y, x) in ((0, 0, 0), (1, 1, 2)):
                    continue  # edge pixels: derivative checked in test_edge_gradients_are_one_sided
                # Image gradient by central differences of the Python evaluation (pixels are interior).
                h = 1e-7
                for c in range(3):
                    hi, lo = list(rgb), list(rgb)
                    hi[c] += h
                    lo[c] -= h
                    vh, _ = tetra_python(hi, lut[n], d)
                    vl, _ = tetra_python(lo, lut[n], d)
                    fd = sum(go[n, k, y, x].item() * (vh[k] - vl[k]) / (2 * h) for k in range(3))
                    assert g_img[n, c, y, x].item() == pytest.approx(fd, rel=1e-5, abs=1e-6)
    torch.testing.assert_close(g_lut, want_lut)
    # fp32 forward against the same Python evaluation.
    out32 = apply_lut(image.float(), lut.float(), interpolation="tetrahedral", backend="torch")
    torch.testing.assert_close(out32, out.float(), **FP32)


@pytest.mark.parametrize("fn", [apply_lut_reference, fallback], ids=["reference", "fallback"])
@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral"])
def test_gradcheck_float64(fn, interpolation):
    d = 4
    image = interior_image(2, 3, 4, d, seed=5).requires_grad_()
    lut = graded_lut(d, 2, seed=6, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda i, t: fn(i, t, interpolation), (image, lut), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("fn", [apply_lut_reference, fallback], ids=["reference", "fallback"])
def test_gradcheck_float64_nearest_lut(fn):
    d = 5
    image = interior_image(2, 3, 4, d, seed=7)
    lut = graded_lut(d, 2, seed=8, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: fn(image, t, "nearest"), (lut,), eps=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------- edge semantics


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_edges_outside_nan_inf_match_reference(interpolation):
    d = 5
    vals = [0.0, 1.0, -0.25, 1.5, float("nan"), float("inf"), -float("inf"), 0.37, 0.5, 0.999]
    g = torch.Generator().manual_seed(2)
    image = torch.tensor(vals)[torch.randint(0, len(vals), (3, 3, 9, 11), generator=g)]
    lut = graded_lut(d, 3, seed=4)
    go = torch.randn(3, 3, 9, 11, generator=g)
    ref = grads(lambda i, t: apply_lut_reference(i, t, interpolation), image, lut, go)
    got = grads(lambda i, t: apply_lut(i, t, interpolation=interpolation, backend="torch"), image, lut, go)
    torch.testing.assert_close(got[0], ref[0], **FP32, equal_nan=True)
    torch.testing.assert_close(got[1], ref[1], atol=1e-5 * (d - 1), rtol=1e-5)
    torch.testing.assert_close(got[2], ref[2], atol=1e-5, rtol=1e-5)
    nan_pixel = torch.isnan(image).any(1, keepdim=True).expand_as(image)
    assert torch.isnan(got[0][nan_pixel]).all() and not torch.isnan(got[0][~nan_pixel]).any()
    assert not torch.isnan(got[1]).any() and not torch.isnan(got[2]).any()
    # Image gradient vanishes outside [0, 1] (and at inf/NaN), as torch.clamp's.
    outside = ~((image >= 0) & (image <= 1))
    assert (got[1][outside] == 0).all()


@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral"])
def test_edge_gradients_are_one_sided(interpolation):
    """At exactly 0 and 1 the image gradient is the slope of the edge cell (torch.clamp passes it there)."""
    d = 4
    lut = graded_lut(d, seed=9, dtype=torch.float64)
    image = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64).view(1, 3, 1, 1).requires_grad_()
    out = apply_lut(image, lut, interpolation=interpolation, backend="torch")
    out[0, 0].sum().backward()  # d(red output)/d(rgb)
    # One-sided slopes by hand. r=0: the first cell along r; g=1: the last cell along g; blue 0.5 sits in
    # cell 1 at fraction 0.5, so along r and g the trilinear slope mixes the two b-planes equally.
    # Tetrahedral: fractions (0, 1, 0.5) order g > b > r, path (0,g,b) +g -> +b -> +r.
    r0, g1, b1 = 0, d - 2, 1
    lr = lut[..., 0].double()
    if interpolation == "trilinear":
        want_r = 0.5 * (
            (lr[b1, g1 + 1, r0 + 1] - lr[b1, g1 + 1, r0])
            + (lr[b1 + 1, g1 + 1, r0 + 1] - lr[b1 + 1, g1 + 1, r0])
        )
        want_g = 0.5 * ((lr[b1, g1 + 1, r0] - lr[b1, g1, r0]) + (lr[b1 + 1, g1 + 1, r0] - lr[b1 + 1, g1, r0]))
        want_b = lr[b1 + 1, g1 + 1, r0] - lr[b1, g1 + 1, r0]
    else:
        want_g = lr[b1, g1 + 1, r0] - lr[b1, g1, r0]
        want_b = lr[b1 + 1, g1 + 1, r0] - lr[b1, g1 + 1, r0]
        want_r = lr[b1 + 1, g1 + 1, r0 + 1] - lr[b1 + 1, g1 + 1, r0]
    want = torch.stack([want_r, want_g, want_b]) * (d - 1)
    torch.testing.assert_close(image.grad.view(3), want)
    # Same from the reference.
    image2 = image.detach().clone().requires_grad_()
    apply_lut_reference(image2, lut[None], interpolation)[0, 0].sum().backward()
    torch.testing.assert_close(image2.grad, image.grad)


@pytest.mark.parametrize("shared", [True, False], ids=["shared-lut", "per-image-luts"])
def test_empty_image_gives_empty_output_and_zero_lut_gradient(shared):
    image = torch.rand(2, 3, 0, 5, requires_grad=True)
    lut = graded_lut(3, None if shared else 2).requires_grad_()
    out = apply_lut(image, lut, backend="torch")
    assert out.shape == image.shape
    out.sum().backward()
    assert torch.equal(lut.grad, torch.zeros_like(lut)) and image.grad.shape == image.shape


def test_nan_pixel_does_not_touch_lut_gradient():
    d = 5
    g = torch.Generator().manual_seed(3)
    image = torch.rand(1, 3, 4, 5, generator=g)
    lut = graded_lut(d, 1, seed=1)
    go = torch.randn(1, 3, 4, 5, generator=g)
    poisoned = image.clone()
    poisoned[0, 1, 2, 3] = float("nan")
    go_without = go.clone()
    go_without[..., 2, 3] = 0
    for interpolation in INTERPOLATIONS:

        def run(i, t, interpolation=interpolation):
            return apply_lut(i, t, interpolation=interpolation, backend="torch")

        _, _, g_nan = grads(run, poisoned, lut, go)
        _, _, g_ref = grads(run, image, lut, go_without)
        torch.testing.assert_close(g_nan, g_ref)


def test_nearest_rounds_to_closest_point_and_has_zero_image_gradient():
    d = 5
    lut = graded_lut(d, seed=2)
    # 0.3*(D-1)=1.2 -> 1, 0.6*4=2.4 -> 2, 0.9*4=3.6 -> 4.
    image = torch.tensor([0.3, 0.6, 0.9]).view(1, 3, 1, 1).requires_grad_()
    out = apply_lut(image, lut, interpolation="nearest", backend="torch")
    torch.testing.assert_close(out.view(3), lut[4, 2, 1], atol=0, rtol=0)
    lut_p = lut.clone().requires_grad_()
    out = apply_lut(image, lut_p, interpolation="nearest", backend="torch")
    go = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    gi, gl = torch.autograd.grad(out, (image, lut_p), go)
    assert (gi == 0).all()
    want = torch.zeros_like(lut)
    want[4, 2, 1] = go.view(3)
    torch.testing.assert_close(gl, want, atol=0, rtol=0)


# Channel values exactly half-way between two lattice points ((k + 0.5) / (D-1), exact in float32, and so
# is the coordinate x * (D-1)), with the lattice index each rounds to, half to even, worked out by hand.
NEAREST_TIES = {
    2: {0.5: 0},
    4: {0.5: 2},
    6: {0.5: 2},
    9: {1 / 16: 0, 3 / 16: 2, 5 / 16: 2, 7 / 16: 4, 9 / 16: 4, 11 / 16: 6, 13 / 16: 6, 15 / 16: 8},
}


def _tie_backends():
    """name -> apply function: the reference, the torch backend (on the CPU loop the fixture chose) and,
    where it can run, Triton (the interpreter, or CUDA when the interpreter is off)."""
    from lutkern._backend import interpreter_enabled, triton_available

    backends = {"reference": apply_lut_reference, "torch": fallback}
    if triton_available() and interpreter_enabled():
        backends["triton"] = lambda i, t, interp: apply_lut(i, t, interpolation=interp, backend="triton")
    elif triton_available() and torch.cuda.is_available():
        backends["triton on cuda"] = lambda i, t, interp: apply_lut(
            i.cuda(), t.cuda(), interpolation=interp, backend="triton"
        ).cpu()
    return backends


@pytest.mark.parametrize("d", list(NEAREST_TIES))
def test_nearest_ties_round_half_to_even_in_every_backend(d):
    """Every channel of every pixel exactly half-way between lattice points: each backend reads, and sends
    the LUT gradient to, the point that rounding half to even picks."""
    ties = NEAREST_TIES[d]
    values = torch.tensor(list(ties))
    index = torch.tensor(list(ties.values()))
    r, g, b = (t.flatten() for t in torch.meshgrid(values, values, values, indexing="ij"))
    ir, ig, ib = (t.flatten() for t in torch.meshgrid(index, index, index, indexing="ij"))
    image = torch.stack([r, g, b]).view(1, 3, 1, -1)
    lut = graded_lut(d, n=1, seed=d)
    go = torch.randn(image.shape, generator=torch.Generator().manual_seed(d))
    want_lut_grad = torch.zeros_like(lut[0]).index_put_((ib, ig, ir), go.view(3, -1).T, accumulate=True)
    for name, fn in _tie_backends().items():
        out, _, lut_grad = grads(lambda i, t, fn=fn: fn(i, t, "nearest"), image, lut, go)
        torch.testing.assert_close(out.view(3, -1).T, lut[0, ib, ig, ir], atol=0, rtol=0, msg=name)
        torch.testing.assert_close(lut_grad[0], want_lut_grad, atol=1e-6, rtol=1e-6, msg=name)


@pytest.mark.parametrize("interpolation", ["trilinear", "nearest"])
def test_identity_lut_is_identity(interpolation):
    d = 17
    # Lattice points are exact for both; trilinear is exact everywhere on the identity.
    image = (
        torch.randint(0, d, (2, 3, 5, 6)).float() / (d - 1)
        if interpolation == "nearest"
        else torch.rand(2, 3, 5, 6)
    )
    torch.testing.assert_close(
        apply_lut(image, identity_lut(d), interpolation=interpolation, backend="torch"), image
    )


# ------------------------------------------------------------------------------ batching and shapes


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_batch_of_different_luts_is_indexed_per_image(interpolation):
    d = 9
    g = torch.Generator().manual_seed(4)
    image = torch.rand(4, 3, 7, 8, generator=g)
    luts = graded_lut(d, 4, seed=11)
    go = torch.randn(4, 3, 7, 8, generator=g)
    out, gi, gl = grads(
        lambda i, t: apply_lut(i, t, interpolation=interpolation, backend="torch"), image, luts, go
    )
    for n in range(4):
        o1, gi1, gl1 = grads(
            lambda i, t: apply_lut(i, t, interpolation=interpolation, backend="torch"),
            image[n : n + 1],
            luts[n : n + 1],
            go[n : n + 1],
        )
        torch.testing.assert_close(out[n : n + 1], o1, atol=0, rtol=0)
        torch.testing.assert_close(gi[n : n + 1], gi1, atol=0, rtol=0)
        torch.testing.assert_close(gl[n : n + 1], gl1, atol=0, rtol=0)
    # The LUTs differ, so swapping them changes the result (the test above would catch a mix-up).
    assert not torch.equal(apply_lut(image, luts.flip(0), backend="torch"), out)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_shared_lut_and_unbatched_image(interpolation):
    d = 6
    g = torch.Generator().manual_seed(5)
    image = torch.rand(3, 3, 5, 4, generator=g)
    lut = graded_lut(d, seed=12)
    go = torch.randn(3, 3, 5, 4, generator=g)

    def run(i, t):
        return apply_lut(i, t, interpolation=interpolation, backend="torch")

    out, gi, gl = grads(run, image, lut, go)
    assert gl.shape == lut.shape
    out_e, gi_e, gl_e = grads(lambda i, t: run(i, t.expand(3, -1, -1, -1, -1)), image, lut, go)
    torch.testing.assert_close(out, out_e, atol=0, rtol=0)
    torch.testing.assert_close(gi, gi_e, atol=0, rtol=0)
    torch.testing.assert_close(gl, gl_e, **FP32)
    single = run(image[1], lut)
    assert single.shape == (3, 5, 4)
    torch.testing.assert_close(single, out[1], atol=0, rtol=0)


@pytest.mark.parametrize("shared", [True, False], ids=["shared-lut", "per-image-luts"])
def test_many_chunks_and_workers_match_reference_and_are_deterministic(monkeypatch, shared):
    """Tiny chunks so every image spans several chunks spread over the worker threads."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # two workers, whatever the machine
    monkeypatch.setattr(fast_mod, "CHUNK", 37)
    monkeypatch.setattr(cpu_mod, "CHUNK", 37)
    monkeypatch.setattr(cpu_mod, "MIN_WORK", 1)
    d = 7
    g = torch.Generator().manual_seed(6)
    image = torch.rand(3, 3, 13, 17, generator=g)
    lut = graded_lut(d, None if shared else 3, seed=13)
    lut5 = lut.expand(1, -1, -1, -1, -1) if shared else lut
    go = torch.randn(3, 3, 13, 17, generator=g)
    assert len(fast_mod.schedule(3, lut5.shape[0], 13 * 17, image.device, 37, 1)) == 2
    ref = grads(lambda i, t: apply_lut_reference(i, t.expand_as(lut5)), image, lut, go)
    # The eager loop's LUT gradient accumulators: each must have a single writing worker, or concurrent
    # scatter_add_s race and lose updates (rarely, at these sizes: so the writers are checked, not luck).
    # The workers run one after another here, each job's worker recorded.
    writers, worker, real_scatter_add = {}, [None], torch.Tensor.scatter_add_

    def recording_scatter_add(self, *args, **kwargs):
        writers.setdefault(self.data_ptr(), set()).add(worker[0])
        return real_scatter_add(self, *args, **kwargs)

    def sequential_run(fn, plan):
        for w, jobs in enumerate(plan):
            for job in jobs:
                worker[0] = w
                fn(w, job)

    with monkeypatch.context() as patch:
        patch.setattr(torch.Tensor, "scatter_add_", recording_scatter_add)
        patch.setattr(fast_mod, "run_plan", sequential_run)
        first = grads(lambda i, t: apply_lut(i, t, backend="torch"), image, lut, go)
    if writers:  # the eager loop (the compiled loop does not call scatter_add_)
        assert all(len(w) == 1 for w in writers.values()), writers
        assert set().union(*writers.values()) == {0, 1}  # both workers wrote
    again = grads(lambda i, t: apply_lut(i, t, backend="torch"), image, lut, go)
    for a, b, r in zip(first, again, ref, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        torch.testing.assert_close(a, r, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------ dtypes


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_half_precision_computes_in_fp32(dtype, interpolation):
    d = 17
    g = torch.Generator().manual_seed(7)
    image = torch.rand(2, 3, 9, 10, generator=g).to(dtype)
    lut = graded_lut(d, 2, seed=14).to(dtype)
    go = torch.randn(2, 3, 9, 10, generator=g).to(dtype)
    out, gi, gl = grads(
        lambda i, t: apply_lut(i, t, interpolation=interpolation, backend="torch"), image, lut, go
    )
    assert out.dtype == gi.dtype == gl.dtype == dtype
    # The fp32 result of the same rounded inputs: the half path must only round at the end.
    want = grads(
        lambda i, t: apply_lut_reference(i, t, interpolation), image.float(), lut.float(), go.float()
    )
    torch.testing.assert_close(out.float(), want[0], **HALF[dtype])
    if interpolation != "nearest":
        scale = want[1].abs().max().item()
        torch.testing.assert_close(
            gi.float(), want[1], atol=HALF[dtype]["atol"] * scale, rtol=HALF[dtype]["rtol"]
        )
    # LUT gradient: accumulated in fp32 and rounded once, so it stays within the output tolerance.
    scale = want[2].abs().max().item()
    torch.testing.assert_close(
        gl.float(), want[2], atol=HALF[dtype]["atol"] * scale, rtol=HALF[dtype]["rtol"]
    )


def test_float64_supported_on_torch_backend():
    d = 5
    image = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    lut = graded_lut(d, 2, seed=15, dtype=torch.float64)
    out = apply_lut(image, lut, interpolation="tetrahedral", backend="torch")
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, apply_lut_reference(image, lut, "tetrahedral"), atol=1e-12, rtol=1e-12)


# ------------------------------------------------------------------------------------------ errors

@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_out_receives_the_same_bits(cpu_loop, backend, dtype):
    """``out=`` writes exactly what a call without it returns, into the given buffer (batched and
    unbatched, per-image and shared LUTs), and returns that buffer."""
    from lutkern._backend import interpreter_enabled, triton_available

    if backend == "triton" and (cpu_loop == "compiled" or dtype == torch.float64):
        pytest.skip("Triton runs neither the CPU loops nor float64")
    if backend == "triton" and not (triton_available() and interpreter_enabled()):
        pytest.skip("Triton needs TRITON_INTERPRET=1 on CPU tensors")
    image = (torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(3)) * 1.2 - 0.1).to(dtype)
    for lut in (graded_lut(5, n=2, seed=4, dtype=dtype), graded_lut(5, seed=5, dtype=dtype)):
        for img in (image, image[0]) if lut.dim() == 4 else (image,):
            for interpolation in INTERPOLATIONS:
                want = apply_lut(img, lut, interpolation=interpolation, backend=backend)
                out = torch.full_like(img, float("nan"))
                with torch.no_grad():
                    got = apply_lut(img, lut, interpolation=interpolation, backend=backend, out=out)
                assert got is out
                assert torch.equal(out, want), (interpolation, tuple(img.shape), tuple(lut.shape))


_IMG = torch.rand(2, 3, 4, 4)
_LUT = identity_lut(3)


@pytest.mark.parametrize(
    ("image", "lut", "kwargs", "exc", "words"),
    [
        (torch.rand(3, 4), _LUT, {}, ValueError, "(3,H,W) or (B,3,H,W)"),
        (torch.rand(1, 2, 3, 4, 4), _LUT, {}, ValueError, "(3,H,W) or (B,3,H,W)"),
        (torch.rand(2, 4, 4, 4), _LUT, {}, ValueError, "(2, 4, 4, 4)"),
        (_IMG, torch.rand(3, 3, 3), {}, ValueError, "(D,D,D,3) or (B,D,D,D,3)"),
        (_IMG, torch.rand(3, 3, 4, 3), {}, ValueError, "cubic"),
        (_IMG, torch.rand(3, 3, 3, 4), {}, ValueError, "last dimension must be 3"),
        (_IMG, torch.rand(1, 1, 1, 3), {}, ValueError, "size D"),
        (_IMG, torch.zeros(1, 1, 1, 3).expand(257, 257, 257, 3), {}, ValueError, "size D"),
        (_IMG, _LUT.expand(3, -1, -1, -1, -1), {}, ValueError, "batch mismatch"),
        (_IMG[0], _LUT.expand(1, -1, -1, -1, -1), {}, ValueError, "batch of LUTs"),
        ((_IMG * 255).to(torch.uint8), _LUT, {}, TypeError, "torch.uint8"),
        (_IMG, _LUT.to(torch.int32), {}, TypeError, "torch.int32"),
        (_IMG.numpy(), _LUT, {}, TypeError, "ndarray"),
        (_IMG, _LUT, {"interpolation": "cubic"}, ValueError, "'cubic'"),
        (_IMG, _LUT, {"backend": "cuda"}, ValueError, "'cuda'"),
        (_IMG, _LUT, {"out": _IMG[0]}, ValueError, "out must match"),
        (_IMG, _LUT, {"out": _IMG.double()}, ValueError, "out must match"),
        (_IMG, _LUT, {"out": torch.rand(2, 4, 4, 3).permute(0, 3, 1, 2)}, ValueError, "contiguous"),
        (_IMG, _LUT, {"out": _IMG}, ValueError, "share memory"),
        (torch.rand(2, 3, 4, 4, requires_grad=True), _LUT, {"out": _IMG.clone()}, RuntimeError, "no_grad"),
        (_IMG, _LUT, {"out": [0.0]}, TypeError, "out must be a torch.Tensor"),
    ],
)
def test_bad_inputs_raise_naming_the_problem(image, lut, kwargs, exc, words):
    with pytest.raises(exc) as info:
        apply_lut(image, lut, **kwargs)
    assert words in str(info.value)


def test_device_mismatch_raises():
    image = torch.empty(1, 3, 2, 2, device="meta")
    with pytest.raises(ValueError, match="meta") as info:
        apply_lut(image, identity_lut(3), backend="torch")
    assert "cpu" in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_torch_backend_on_cuda_matches_cpu(interpolation):
    d = 17
    g = torch.Generator().manual_seed(8)
    image = torch.rand(2, 3, 19, 21, generator=g)
    lut = graded_lut(d, 2, seed=16)
    go = torch.randn(2, 3, 19, 21, generator=g)

    def run(i, t):
        return apply_lut(i, t, interpolation=interpolation, backend="torch")

    want = grads(run, image, lut, go)
    got = grads(run, image.cuda(), lut.cuda(), go.cuda())
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.cpu(), b, atol=1e-5, rtol=1e-5)


def test_apply_lut_inside_torch_compile_runs_eagerly():
    """Compiled models call the op between graphs: same values and gradients as in eager mode."""
    torch._dynamo.reset()
    image = torch.rand(2, 3, 5, 7, requires_grad=True)
    lut = torch.rand(2, 5, 5, 5, 3, requires_grad=True)

    def graded_twice(img, table):
        return apply_lut(img * 0.5 + 0.25, table, backend="torch") * 2

    compiled = torch.compile(graded_twice, backend="eager", fullgraph=False)
    out = compiled(image, lut)
    out.square().sum().backward()
    grads = image.grad.clone(), lut.grad.clone()
    image.grad = lut.grad = None
    expected = graded_twice(image, lut)
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grads[0], image.grad)
    torch.testing.assert_close(grads[1], lut.grad)
