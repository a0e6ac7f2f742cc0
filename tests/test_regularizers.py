"""LUT regularizers: both backends against literal transcriptions of the published formulas (the seed's
smoothness term, TPAMI 3D-LUT TV and monotonicity) and against closed forms derived by hand.

The oracles run on CPU tensors. The Triton backend runs on CPU tensors through the interpreter
(``TRITON_INTERPRET=1``, set by conftest.py), or on CUDA tensors when the interpreter is off and a GPU is
present (``TRITON_INTERPRET=0 pytest tests/test_regularizers.py``).
"""

import functools

import numpy as np
import pytest
import torch

import lutkern
from lutkern._backend import interpreter_enabled, triton_available
from lutkern.reference import monotonicity_reference, smoothness_reference, total_variation_reference

TRITON_DEVICE = "cpu" if interpreter_enabled() else "cuda"
_triton_usable = triton_available() and (interpreter_enabled() or torch.cuda.is_available())
needs_triton = pytest.mark.skipif(not _triton_usable, reason="Triton needs CUDA or TRITON_INTERPRET=1")
BACKENDS = ["torch", pytest.param("triton", marks=needs_triton)]
FUNCTIONS = {
    "smoothness": (lutkern.smoothness, smoothness_reference),
    "total_variation": (lutkern.total_variation, total_variation_reference),
    "monotonicity": (lutkern.monotonicity, monotonicity_reference),
}
# Tolerances for values of order 1; gradients are compared relative to their largest element.
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}


def random_luts(batch: int, size: int, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    """A batch of different LUTs: the identity plus a per-LUT random perturbation (some decreasing steps)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(batch, size, size, size, 3, generator=gen, dtype=torch.float64)
    scale = torch.linspace(0.2, 1.0, batch, dtype=torch.float64).view(-1, 1, 1, 1, 1)
    return (lutkern.identity_lut(size, dtype=torch.float64) + scale * (noise - 0.5)).to(dtype)


def on(backend: str, fn, **kwargs):
    """``fn(lut, backend=backend, **kwargs)`` run on the backend's device, as a function of a CPU LUT."""
    device = TRITON_DEVICE if backend == "triton" else "cpu"

    def run(lut: torch.Tensor):
        out = fn(lut.to(device), backend=backend, **kwargs)
        return tuple(o.cpu() for o in out) if isinstance(out, tuple) else out.cpu()

    return run


def weighted_reference(lut: torch.Tensor, smooth=0.0, tv=0.0, mono=0.0) -> torch.Tensor:
    terms = smoothness_reference(lut), total_variation_reference(lut), monotonicity_reference(lut)
    return smooth * terms[0] + tv * terms[1] + mono * terms[2]


def value_and_grad(fn, lut: torch.Tensor):
    lut = lut.detach().clone().requires_grad_(True)
    value = fn(lut)
    (grad,) = torch.autograd.grad(value, lut)
    return value.detach(), grad


def assert_grad_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    tol = TOL[expected.dtype]
    atol = tol["atol"] * expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=tol["rtol"], atol=atol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [2, 3, 9])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_matches_published_formula(name, size, dtype, backend):
    fn, reference = FUNCTIONS[name]
    luts = random_luts(3, size, dtype, seed=size)
    value, grad = value_and_grad(on(backend, fn), luts)
    expected, expected_grad = value_and_grad(reference, luts)
    assert value.dtype == dtype and value.shape == ()
    torch.testing.assert_close(value, expected, **TOL[dtype])
    assert_grad_close(grad, expected_grad)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_matches_published_formulas_at_size_33(dtype, backend):
    luts = random_luts(2, 33, dtype, seed=33)
    weights = (0.7, 1.3, 2.1)

    smooth, tv, mono = weights
    fused = on(backend, lutkern.lut_regularizers, smooth=smooth, tv=tv, mono=mono, return_terms=True)

    def reference(x):
        return torch.stack([smoothness_reference(x), total_variation_reference(x), monotonicity_reference(x)])

    x = luts.clone().requires_grad_(True)
    total, terms = fused(x)
    (grad,) = torch.autograd.grad(total, x)
    expected_terms, expected_grad = value_and_grad(
        lambda y: (reference(y) * torch.tensor(weights, dtype=dtype)).sum(), luts
    )
    torch.testing.assert_close(terms.detach(), reference(luts), **TOL[dtype])
    torch.testing.assert_close(total.detach(), expected_terms, **TOL[dtype])
    assert_grad_close(grad, expected_grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_terms_are_as_accurate_as_the_unfused_formulas(backend):
    """Against the float64 value of the same float32 LUTs (4 LUTs of 33^3, several seeds), each fused
    term's relative error is within twice that of the published formula run in float32, or of one
    rounding of a float32 result (2^-24) where the formula happens to land closer."""
    for seed in range(3):
        luts = random_luts(4, 33, torch.float32, seed=seed)
        _, fused = on(backend, lutkern.lut_regularizers, return_terms=True)(luts)
        for k, (name, exact, unfused) in enumerate(_float32_formula_errors(seed)):
            error = abs(fused[k].item() - exact) / exact
            assert error <= 2 * max(unfused, 2**-24), (name, seed, error, unfused)


@functools.cache
def _float32_formula_errors(seed: int) -> list[tuple[str, float, float]]:
    """(name, float64 value, relative error of the float32 formula) per term, for the LUTs of the test
    above (shared by its backends)."""
    luts = random_luts(4, 33, torch.float32, seed=seed)
    result = []
    for name in FUNCTIONS:
        reference = FUNCTIONS[name][1]
        exact = reference(luts.double()).item()
        result.append((name, exact, abs(reference(luts).item() - exact) / exact))
    return result


@pytest.mark.parametrize("backend", BACKENDS)
def test_terms_sum_gradient(backend):
    """``terms.sum()`` hands the backward an expanded (stride 0) upstream gradient."""
    luts = random_luts(2, 4, torch.float64, seed=9)

    def terms_sum(x):
        return on(backend, lutkern.lut_regularizers, return_terms=True)(x)[1].sum()

    value, grad = value_and_grad(terms_sum, luts)
    expected, expected_grad = value_and_grad(lambda x: weighted_reference(x, 1.0, 1.0, 1.0), luts)
    torch.testing.assert_close(value, expected, **TOL[torch.float64])
    assert_grad_close(grad, expected_grad)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", [2, 3])
def test_gradcheck(size, backend):
    luts = random_luts(2 if size == 2 else 1, size, torch.float64, seed=7).requires_grad_(True)

    def terms(x):
        return on(backend, lutkern.lut_regularizers, return_terms=True)(x)[1]

    # The interpreter pays per launch: Triton gets the random-projection check, not the full Jacobian
    # (its full gradient is compared with the oracles' in the other tests).
    assert torch.autograd.gradcheck(terms, (luts,), eps=1e-6, atol=1e-8, fast_mode=backend == "triton")


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_is_the_mean_of_per_lut_values(backend):
    luts = random_luts(4, 5, torch.float64, seed=3)
    for name, (fn, reference) in FUNCTIONS.items():
        value, grad = value_and_grad(on(backend, fn), luts)
        singles = [value_and_grad(reference, lut.unsqueeze(0)) for lut in luts]
        expected = torch.stack([v for v, _ in singles]).mean()
        torch.testing.assert_close(value, expected, **TOL[torch.float64], msg=name)
        # Each LUT's gradient is its own gradient scaled by 1/B: no LUT leaks into another.
        assert_grad_close(grad, torch.cat([g for _, g in singles]) / len(luts))


@pytest.mark.parametrize("backend", BACKENDS)
def test_unbatched_and_non_contiguous_luts(backend):
    luts = random_luts(2, 4, torch.float64, seed=5)
    padded = torch.cat([luts, torch.zeros_like(luts[..., :1])], dim=-1)[..., :3]  # a strided view
    assert not padded.is_contiguous()
    for name, (fn, reference) in FUNCTIONS.items():
        value = on(backend, fn)(padded)
        torch.testing.assert_close(value, reference(luts), **TOL[torch.float64], msg=name)
        value, grad = value_and_grad(on(backend, fn), luts[1])
        expected, expected_grad = value_and_grad(reference, luts[1:])
        assert grad.shape == luts[1].shape
        torch.testing.assert_close(value, expected, **TOL[torch.float64], msg=name)
        assert_grad_close(grad, expected_grad[0])


# Closed forms. Along each axis there are N = 3*D*D*(D-1) differences and 3*(D-1)^3 in the
# [:-1,:-1,:-1] sub-cube of the seed's variance term (whose 2-sample unbiased variance is d^2/2).
# Identity, h = 1/(D-1): along each axis only the channel of that axis changes, by +h, so per axis
# mean|d| = h/3, mean d^2/2 = h^2/6, and the TV mean is h^2 * sum_i w_i / (3 (D-1)) with
# sum_i w_i = (D-1) + 2 for D >= 3 and 2 for D = 2 (the single slice is both first and last).
def identity_closed_forms(size: int) -> dict:
    h = 1.0 / (size - 1)
    weight_sum = size + 1 if size >= 3 else 2
    tv = weight_sum * h * h / (size - 1)
    return {"smoothness": h + h * h / 2, "total_variation": tv, "monotonicity": 0.0}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", [2, 3, 9, 33])
def test_identity_closed_forms(size, backend):
    identity = lutkern.identity_lut(size, dtype=torch.float64)
    for name, expected in identity_closed_forms(size).items():
        fn, reference = FUNCTIONS[name]
        value, grad = value_and_grad(on(backend, fn), identity)
        torch.testing.assert_close(value.item(), expected, rtol=1e-12, atol=1e-14)
        if size <= 9:  # (the autograd oracle is slow at 33)
            # Most differences of the identity are exactly 0: the subgradients at ties must match torch's.
            assert_grad_close(grad, value_and_grad(reference, identity.unsqueeze(0))[1][0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", [2, 3, 9, 33])
def test_decreasing_luts_closed_forms(size, backend):
    h = 1.0 / (size - 1)
    identity = lutkern.identity_lut(size, dtype=torch.float64)
    inverted = 1 - identity  # every channel decreases by h along its own axis: mono = 3 * h/3
    torch.testing.assert_close(on(backend, lutkern.monotonicity)(inverted).item(), h, rtol=1e-12, atol=0)
    # Same |differences| as the identity, so the same smoothness and TV.
    for name, expected in identity_closed_forms(size).items():
        if name != "monotonicity":
            value = on(backend, FUNCTIONS[name][0])(inverted).item()
            torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-14)
    red_inverted = identity.clone()
    red_inverted[..., 0] = 1 - red_inverted[..., 0]  # only red, only along the red axis: h/3
    value = on(backend, lutkern.monotonicity)(red_inverted).item()
    torch.testing.assert_close(value, h / 3, rtol=1e-12, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", [2, 9])
@pytest.mark.parametrize("axis", [0, 1, 2])  # b, g, r
def test_single_step_closed_forms(axis, size, backend):
    """All channels jump by 1 between slices k and k+1 of one axis: 3*D*D differences of 1 out of N, of
    which 3*(D-1)^2 lie in the sub-cube. TV weight 2 on the first/last slice, 1 in the middle."""
    for k in sorted({0, (size - 2) // 2, size - 2}):
        index = torch.arange(size, dtype=torch.float64)
        step = (index > k).to(torch.float64).view([-1 if a == axis else 1 for a in range(3)] + [1])
        lut = step.expand(size, size, size, 3)
        w = 2.0 if k in (0, size - 2) else 1.0
        expected = {"smoothness": 1.5 / (size - 1), "total_variation": w / (size - 1), "monotonicity": 0.0}
        for name, value in expected.items():
            got = on(backend, FUNCTIONS[name][0])(lut).item()
            torch.testing.assert_close(got, value, rtol=1e-12, atol=1e-14, msg=f"{name} k={k}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype, backend):
    luts = random_luts(2, 9, dtype, seed=11)
    for name, (fn, reference) in FUNCTIONS.items():
        value, grad = value_and_grad(on(backend, fn), luts)
        expected, expected_grad = value_and_grad(reference, luts.float())
        assert value.dtype == dtype and grad.dtype == dtype
        # Only the final rounding to the half type differs from the fp32 result.
        torch.testing.assert_close(value.float(), expected, rtol=1e-2, atol=1e-4, msg=name)
        torch.testing.assert_close(
            grad.float(), expected_grad, rtol=1e-2, atol=1e-2 * expected_grad.abs().max().item(), msg=name
        )


@needs_triton
@pytest.mark.skipif(interpreter_enabled(), reason="GPU evidence only: the interpreter runs the programs one "
                    "after another, so two runs cannot differ there")
def test_triton_is_deterministic():
    luts = random_luts(3, 17, torch.float32, seed=2)
    fused = on("triton", lutkern.lut_regularizers, smooth=1.0, tv=1.0, mono=1.0)

    first, second = value_and_grad(fused, luts), value_and_grad(fused, luts)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@needs_triton
@pytest.mark.parametrize(
    "launch, size, batch",
    [("gpu", 17, 2), ("gpu", 33, 1), ("small", 5, 2), ("small", 9, 2)],
)
def test_triton_multi_program_launches(launch, size, batch, monkeypatch):
    """The GPU's tiles (on the interpreter too, whose default is one program) and tiles of 4 rows: many
    programs, a last one with fewer rows, rows padded past 3*D columns, neighbours in other tiles and
    tiles spanning two LUTs."""
    from lutkern.ops import regularizers_triton as ops

    gpu = ops.launch_settings
    launched = []

    def settings(n_rows, cols, device):
        rows, warps = gpu(n_rows, cols, torch.device("cuda")) if launch == "gpu" else (4, 4)
        launched.append((n_rows, rows, cols))
        return rows, warps

    monkeypatch.setattr(ops, "launch_settings", settings)
    luts = random_luts(batch, size, torch.float64, seed=size)
    value, grad = value_and_grad(on("triton", lutkern.lut_regularizers, smooth=1.0, tv=2.0, mono=3.0), luts)
    expected, expected_grad = value_and_grad(lambda x: weighted_reference(x, 1.0, 2.0, 3.0), luts)
    torch.testing.assert_close(value, expected, **TOL[torch.float64])
    assert_grad_close(grad, expected_grad)
    assert len(launched) == 2  # forward and backward
    for n_rows, rows, cols in launched:
        assert n_rows > rows and n_rows % rows and cols > 3 * size


def test_fused_weights():
    luts = random_luts(2, 5, torch.float64, seed=4)
    total = lutkern.lut_regularizers(luts, smooth=0.5, mono=3.0, backend="torch")
    expected = weighted_reference(luts, smooth=0.5, mono=3.0)
    torch.testing.assert_close(total, expected, **TOL[torch.float64])
    numpy_weight = lutkern.lut_regularizers(luts, smooth=np.float32(0.5), mono=3, backend="torch")
    torch.testing.assert_close(numpy_weight, expected, **TOL[torch.float64])
    zero = lutkern.lut_regularizers(luts, backend="torch")
    assert zero.item() == 0.0 and zero.dtype == luts.dtype


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (torch.zeros(4, 4, 3), ValueError, r"\(D,D,D,3\)"),
        (torch.zeros(4, 4, 4, 4), ValueError, "last dimension must be 3"),
        (torch.zeros(2, 4, 4, 5, 3), ValueError, "cubic"),
        (torch.zeros(1, 1, 1, 3), ValueError, "size D"),
        (torch.zeros(4, 4, 4, 3, dtype=torch.int64), TypeError, "floating-point"),
        ([[0.0]], TypeError, "torch.Tensor"),
    ],
)
@pytest.mark.parametrize("name", ["smoothness", "total_variation", "monotonicity", "lut_regularizers"])
def test_bad_luts_are_rejected(name, bad, error, match):
    with pytest.raises(error, match=match):
        getattr(lutkern, name)(bad, backend="torch")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(tv=-1.0), ValueError, "tv weight"),
        (dict(smooth=float("nan")), ValueError, "smooth weight"),
        (dict(mono=True), TypeError, "mono weight"),
        (dict(tv=1.0, backend="cuda"), ValueError, "backend"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        lutkern.lut_regularizers(lutkern.identity_lut(3), **kwargs)
