"""The Triton apply_lut kernels: against the plain-torch reference (forward, image and LUT gradients),
against themselves (finite differences for the image gradient, the adjoint identity for the LUT
gradient, which hold whatever the reference does), and for determinism.

Runs on CPU tensors through Triton's interpreter (``TRITON_INTERPRET=1``, set by conftest.py) and on
CUDA tensors when the interpreter is off and a GPU is present (``TRITON_INTERPRET=0 pytest ...``).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from lutkern import apply_lut, identity_lut  # noqa: E402
from lutkern._backend import interpreter_enabled  # noqa: E402
from lutkern.ops import apply_lut_triton as triton_op  # noqa: E402
from lutkern.ops.apply_lut_triton import apply_lut_triton  # noqa: E402
from lutkern.reference.apply import apply_lut_reference  # noqa: E402

if interpreter_enabled():
    DEVICES = ["cpu"]
elif torch.cuda.is_available():
    DEVICES = ["cuda"]
else:
    pytest.skip("Triton needs CUDA or TRITON_INTERPRET=1", allow_module_level=True)

INTERPOLATIONS = ("trilinear", "tetrahedral", "nearest")
# The kernels compute in float32 and round once on store: tolerances are about one rounding of the
# storage dtype (float32: different summation order).
TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _image(n: int, h: int, w: int, d: int, seed: int = 0) -> torch.Tensor:
    """Random pixels in [-0.2, 1.2] with, where the image is large enough, exact 0 and 1, values below 0
    and above 1, lattice points, and channels equal to each other (tetrahedral ties)."""
    x = torch.rand(n, 3, h * w, generator=_gen(seed)) * 1.4 - 0.2
    specials = torch.tensor([0.0, 1.0, -0.3, 1.7, 0.5, 1 / (d - 1), (d - 2) / (d - 1)])
    k = min(h * w, 2 * len(specials))
    for c in range(3):
        x[:, c, :k] = specials[(torch.arange(k) + 3 * c) % len(specials)]
    ties = torch.tensor([[0.37, 0.37, 0.37], [0.8, 0.8, 0.1], [0.1, 0.8, 0.8], [0.8, 0.1, 0.8]])
    if h * w >= k + len(ties):  # equal fractions in all three channels, then in each pair
        x[:, :, k : k + len(ties)] = ties.T
    return x.view(n, 3, h, w)


def _lut(n: int, d: int, seed: int = 1) -> torch.Tensor:
    """``n`` different LUTs: identity plus noise, so that mis-indexed batches give different answers."""
    noise = 0.3 * torch.randn(n, d, d, d, 3, generator=_gen(seed))
    return identity_lut(d) + noise


def _triton(interpolation: str):
    return lambda img, lut: apply_lut_triton(img, lut, interpolation)


def _run(fn, img, lut, grad_out):
    """(output, image gradient, LUT gradient) of ``fn(img, lut)`` for the output gradient ``grad_out``."""
    img = img.detach().clone().requires_grad_()
    lut = lut.detach().clone().requires_grad_()
    out = fn(img, lut)
    out.backward(grad_out)
    dimg = torch.zeros_like(img) if img.grad is None else img.grad  # nearest: no image dependence
    return out.detach(), dimg, lut.grad


def _reference(img, lut, grad_out, interpolation):
    """The oracle at float32 (the kernels' arithmetic), results in the inputs' dtypes."""
    out, dimg, dlut = _run(
        lambda i, lt: apply_lut_reference(i, lt, interpolation), img.float(), lut.float(), grad_out.float()
    )
    return out.to(img.dtype), dimg.to(img.dtype), dlut.to(lut.dtype)


def _assert_matches_reference(fn, img, lut, interpolation, tol, seed=2):
    grad_out = torch.randn(img.shape, generator=_gen(seed)).to(img.device, img.dtype)
    got = _run(fn, img, lut, grad_out)
    want = _reference(img, lut, grad_out, interpolation)
    for name, g, w in zip(("output", "image gradient", "LUT gradient"), got, want, strict=True):
        torch.testing.assert_close(g, w, equal_nan=True, **tol, msg=lambda m, name=name: f"{name}: {m}")
    return got


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("d", [2, 3, 17, 33])
@pytest.mark.parametrize("hw", [(1, 1), (17, 23)])
def test_matches_reference_batch_of_different_luts(device, interpolation, d, hw):
    img = _image(3, *hw, d).to(device)
    lut = _lut(3, d).to(device)
    _assert_matches_reference(
        lambda i, lt: apply_lut(i, lt, interpolation=interpolation, backend="triton"),
        img, lut, interpolation, TOL[torch.float32],
    )


# The GPU's launch settings, and smaller blocks, on the interpreter (whose default is one program per
# image): each with an image size spanning several programs and ending in a partial block, so that
# the block offsets and the tail masks are exercised as on a GPU.
CUDA = torch.device("cuda")
LAUNCHES = {  # the settings by kernel, and the image's (H, W)
    # 1517 pixels: 2 forward and 6 backward programs of the GPU's 1024 and 256
    "gpu": ({k: triton_op.launch_settings(k, 1 << 20, CUDA) for k in ("forward", "backward")}, (37, 41)),
    "small": ({"forward": (64, 4), "backward": (32, 4)}, (13, 11)),  # 143 pixels: 3 and 5 programs
}


@pytest.fixture(params=list(LAUNCHES))
def multi_block(request, monkeypatch):
    """Launches with the blocks of ``LAUNCHES[param]``; returns the image's (H, W) and the list of
    (kernel, BLOCK) launched, for the test to check that the settings were used."""
    settings, (h, w) = LAUNCHES[request.param]
    for block, _ in settings.values():
        assert h * w > block and h * w % block, "the image must span several blocks and a partial one"
    launched = []

    def fixed(kernel, n_pixels, device):
        launched.append((kernel, settings[kernel][0]))
        return settings[kernel]

    monkeypatch.setattr(triton_op, "launch_settings", fixed)
    return (h, w), launched


def _with_specials_in_the_last_block(img: torch.Tensor) -> torch.Tensor:
    """A NaN pixel, an exact 1 and values outside [0, 1] among the image's last pixels."""
    flat = img.flatten(2)
    flat[0, 1, -1] = float("nan")
    flat[-1, :, -2] = torch.tensor([1.0, -0.5, 1.5])
    flat[-1, :, -3] = 0.0
    return img


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("n_luts", [1, 2], ids=["shared", "per-image"])
def test_multi_block_launches_match_the_reference(device, multi_block, interpolation, n_luts):
    (h, w), launched = multi_block
    img = _with_specials_in_the_last_block(_image(2, h, w, 9)).to(device)
    lut = _lut(n_luts, 9).to(device)
    _assert_matches_reference(_triton(interpolation), img, lut, interpolation, TOL[torch.float32])
    assert {kernel for kernel, _ in launched} == {"forward", "backward"}


@pytest.mark.parametrize("multi_block", ["small"], indirect=True)  # the interpreter's scans are slow
@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral"])
def test_multi_block_run_aggregation_changes_no_bit(device, multi_block, interpolation, monkeypatch):
    """Runs of pixels on the same lattice points that cross block boundaries (a smooth image): summed per
    block before the atomics, bitwise the same gradients as one atomic per pixel."""
    (h, w), _ = multi_block
    ramp = torch.linspace(-0.05, 1.05, h * w).view(h, w)
    img = torch.stack([ramp, ramp.flip(0), torch.full((h, w), 0.3)]).expand(2, 3, h, w).contiguous()
    img[1] = img[1].roll(5, dims=2)
    img, lut = img.to(device), _lut(1, 5).to(device)
    grad_out = torch.randn(img.shape, generator=_gen(14)).to(device)
    _check_run_aggregation(img, lut, grad_out, interpolation, monkeypatch)


def _check_run_aggregation(img, lut, grad_out, interpolation, monkeypatch) -> None:
    """The backward with runs summed before the atomics gives bitwise the gradients of one atomic per
    pixel, and the reference's."""
    results = []
    for aggregate in (False, True):
        monkeypatch.setattr(triton_op, "AGGREGATE_RUNS", aggregate)
        results.append(_run(_triton(interpolation), img, lut, grad_out))
    (_, dimg0, dlut0), (_, dimg1, dlut1) = results
    assert torch.equal(dlut0, dlut1) and torch.equal(dimg0, dimg1)
    want = _reference(img, lut, grad_out, interpolation)
    torch.testing.assert_close(dlut1, want[2], **TOL[torch.float32])
    torch.testing.assert_close(dimg1, want[1], **TOL[torch.float32])


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("n_luts", [1, 4], ids=["shared", "per-image"])
def test_direct_call_shared_and_per_image_luts(device, interpolation, n_luts):
    img = _image(4, 9, 11, 5).to(device)
    lut = _lut(n_luts, 5).to(device)
    _, _, dlut = _assert_matches_reference(
        _triton(interpolation), img, lut, interpolation, TOL[torch.float32]
    )
    assert dlut.shape == lut.shape


def test_public_api_unbatched_image_and_shared_lut(device):
    img = _image(1, 13, 7, 9)[0].to(device)
    lut = _lut(1, 9)[0].to(device)
    got = apply_lut(img, lut, interpolation="tetrahedral", backend="triton")
    want = apply_lut_reference(img[None], lut[None], "tetrahedral")[0]
    assert got.shape == img.shape
    torch.testing.assert_close(got, want, **TOL[torch.float32])


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_nan_inf_out_of_range_never_read_outside_the_lut(device, interpolation):
    """NaN in one channel -> NaN pixel and no gradient; +-inf and values outside [0,1] read the LUT's
    edge. The LUT sits between two guard LUTs of 1e6: any read outside it would show in the output."""
    d = 5
    img = _image(2, 8, 8, d)
    inf, nan = float("inf"), float("nan")
    img[0, :, 0, :6] = torch.tensor([[nan, 0.5, 0.5], [0.2, inf, -inf], [-inf, -inf, -inf], [inf, inf, inf],
                                     [nan, nan, nan], [1e30, -1e30, 0.5]]).T
    img, lut = img.to(device), _lut(2, d).to(device)
    guarded = torch.full((4, d, d, d, 3), 1e6, device=device)
    guarded[1:3] = lut
    guarded.requires_grad_()
    grad_out = torch.randn(img.shape, generator=_gen(3)).to(device)
    out = apply_lut_triton(img, guarded[1:3], interpolation)
    out.backward(grad_out)
    nan_pixel = img.isnan().any(dim=1, keepdim=True).expand_as(out)
    assert out[nan_pixel].isnan().all() and not out[~nan_pixel].isnan().any()
    assert out[~nan_pixel].abs().max() < 1e3
    want_out, want_dimg, want_dlut = _reference(img, lut, grad_out, interpolation)
    torch.testing.assert_close(out.detach(), want_out, equal_nan=True, **TOL[torch.float32])
    torch.testing.assert_close(guarded.grad[1:3], want_dlut, **TOL[torch.float32])
    dimg = _run(_triton(interpolation), img, lut, grad_out)[1]
    assert not dimg[nan_pixel].any()
    torch.testing.assert_close(dimg, want_dimg, **TOL[torch.float32])


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(device, interpolation, dtype):
    img = _image(2, 16, 16, 9).to(device, dtype)
    lut = _lut(2, 9).to(device, dtype)
    got = _assert_matches_reference(
        _triton(interpolation), img, lut, interpolation, TOL[dtype]
    )
    assert [t.dtype for t in got] == [dtype, dtype, dtype]


def test_half_image_with_float32_lut(device):
    img = _image(2, 16, 16, 9).to(device, torch.bfloat16)
    lut = _lut(2, 9).to(device)
    _, dimg, dlut = _assert_matches_reference(
        _triton("trilinear"), img, lut, "trilinear", TOL[torch.bfloat16]
    )
    assert dimg.dtype == torch.bfloat16 and dlut.dtype == torch.float32


def test_lut_gradient_accumulates_in_float32_for_half_inputs(device):
    """4096 pixels of nearly one colour all feed the same 8 lattice points: a float16 running sum would be
    off by far more than one float16 rounding of the float32 sum."""
    img = (0.4 + 0.01 * torch.rand(1, 3, 64, 64, generator=_gen(4))).to(device, torch.float16)
    lut = _lut(1, 3).to(device, torch.float16)
    grad_out = (0.3 + 0.1 * torch.rand(img.shape, generator=_gen(5))).to(device, torch.float16)
    dlut = _run(_triton("trilinear"), img, lut, grad_out)[2]
    want = _reference(img, lut, grad_out, "trilinear")[2]
    assert want.abs().max() > 500  # large sums: where float16 accumulation would visibly drift
    torch.testing.assert_close(dlut, want, rtol=1e-3, atol=0)


def _interior_image(n: int, h: int, w: int, d: int, seed: int) -> torch.Tensor:
    """Pixels whose cell fractions are far from 0, 1 and from each other (no cell or tetrahedron
    boundary within 0.05), plus channels exactly at 0 and 1 and strictly outside [0, 1]."""
    g = _gen(seed)
    cells = torch.randint(0, d - 1, (n, 3, h * w), generator=g)
    fracs = torch.tensor([0.2, 0.5, 0.8])[torch.rand(n, h * w, 3, generator=g).argsort(-1)].transpose(1, 2)
    fracs = fracs + 0.05 * (torch.rand(fracs.shape, generator=g) - 0.5)
    x = (cells + fracs) / (d - 1)
    x[:, 0, :4] = torch.tensor([0.0, 1.0, -0.25, 1.25])
    x[:, 2, 4:8] = torch.tensor([1.0, 0.0, 1.5, -0.5])
    return x.view(n, 3, h, w)


@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral"])
def test_image_gradient_is_the_true_derivative(device, interpolation):
    """Each channel's gradient equals a finite difference of the kernel's own forward: central inside,
    one-sided at exactly 0 and 1 (the edge cell's slope), zero strictly outside. The interpolants are
    linear along one axis within a piece, so the difference is exact up to rounding."""
    d = 6
    img = _interior_image(2, 8, 8, d, seed=6).to(device)
    lut = _lut(2, d).to(device)
    grad_out = torch.randn(img.shape, generator=_gen(7)).to(device)
    dimg = _run(_triton(interpolation), img, lut, grad_out)[1]
    eps = 0.01 / (d - 1)
    for c in range(3):
        x = img[:, c]
        hi, lo = img.clone(), img.clone()
        hi[:, c] = torch.where(x == 1, x, x + eps)
        lo[:, c] = torch.where(x == 0, x, x - eps)
        diff = apply_lut_triton(hi, lut, interpolation) - apply_lut_triton(lo, lut, interpolation)
        fd = (diff * grad_out).sum(dim=1) / (hi[:, c] - lo[:, c])
        torch.testing.assert_close(dimg[:, c], fd, rtol=2e-3, atol=2e-3)
    assert dimg[:, 0].flatten(1)[:, 2:4].eq(0).all() and dimg[:, 0].flatten(1)[:, :2].ne(0).all()


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("n_luts", [1, 3], ids=["shared", "per-image"])
def test_lut_gradient_is_the_adjoint(device, interpolation, n_luts):
    """The output is linear in the LUT, so <dL/dlut, V> == <grad_out, apply(img, V)> for any V."""
    d = 7
    img = _image(3, 12, 10, d).to(device)
    lut = _lut(n_luts, d).to(device)
    grad_out = torch.randn(img.shape, generator=_gen(8)).to(device)
    dlut = _run(_triton(interpolation), img, lut, grad_out)[2]
    for seed in (9, 10):
        v = torch.randn(lut.shape, generator=_gen(seed)).to(device)
        applied = apply_lut_triton(img, v, interpolation)
        nan = applied.isnan()
        want = (grad_out * applied.masked_fill(nan, 0)).sum()
        torch.testing.assert_close((dlut * v).sum(), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("n_luts", [1, 3], ids=["shared", "per-image"])
def test_lut_gradient_does_not_depend_on_the_order_of_the_pixels(device, interpolation, n_luts):
    """What makes the atomics deterministic on a GPU, tested directly: the fixed-point terms are integers,
    so their sum is the same whatever order they are added in. Permuting the pixels together with their
    output gradients (across the batch for a shared LUT, so that terms also move between replica
    buffers) gives bitwise the same LUT gradient; float32 sums in another order would differ in the
    last bits (many pixels per lattice point here)."""
    d, n, hw = 5, 3, 16 * 16
    img, lut = _image(n, 16, 16, d).to(device), _lut(n_luts, d).to(device)
    grad_out = torch.randn(img.shape, generator=_gen(15)).to(device)
    if n_luts == 1:
        order = torch.randperm(n * hw, generator=_gen(16))

        def permute(t):
            return t.permute(1, 0, 2, 3).reshape(3, -1)[:, order].reshape(3, n, 16, 16).permute(1, 0, 2, 3)
    else:
        order = torch.stack([torch.randperm(hw, generator=_gen(16 + i)) for i in range(n)])

        def permute(t):
            flat = t.reshape(n, 3, hw)
            return flat.gather(2, order[:, None, :].expand(n, 3, hw).to(device)).view(n, 3, 16, 16)

    dlut = _run(_triton(interpolation), img, lut, grad_out)[2]
    permuted = _run(_triton(interpolation), permute(img).contiguous(), lut, permute(grad_out).contiguous())[2]
    assert torch.equal(dlut, permuted)
    torch.testing.assert_close(dlut, _reference(img, lut, grad_out, interpolation)[2], **TOL[torch.float32])


@pytest.mark.parametrize("interpolation", ["trilinear", "nearest"])
@pytest.mark.parametrize("n_luts", [1, 4], ids=["shared", "per-image"])
def test_fixed_point_sum_at_its_largest_does_not_overflow(device, interpolation, n_luts):
    """Every pixel exactly on one lattice point with the largest output gradient: each fixed-point term is
    the scale 2^K itself, so the int64 sum is as large as it can be (2^62 for the 256 pixels that share
    a LUT: a shared LUT's headroom must count the whole batch, a per-image LUT's only its image)."""
    img = torch.full((4, 3, 8, 8), 0.5, device=device)  # lattice point (1,1,1) of a D=3 LUT
    lut = identity_lut(3).expand(n_luts, -1, -1, -1, -1).contiguous().to(device)
    grad_out = torch.ones_like(img)
    dlut = _run(_triton(interpolation), img, lut, grad_out)[2]
    torch.testing.assert_close(dlut, _reference(img, lut, grad_out, interpolation)[2], rtol=0, atol=0)
    assert float(dlut[0, 1, 1, 1, 0]) == 256.0 / n_luts


@pytest.mark.skipif(interpreter_enabled(), reason="GPU evidence only: the interpreter runs the programs and "
                    "their atomics one after another, so two runs cannot differ there")
def test_gradients_are_deterministic(device):
    """Bitwise-identical gradients from two backward passes (integer fixed-point accumulation), with a
    shared LUT (several replica buffers) and a smooth image (many pixels per lattice point)."""
    ramp = torch.linspace(0, 1, 64)
    r, g = torch.meshgrid(ramp, ramp, indexing="xy")
    img = torch.stack([r, g, (r + g) / 2])
    img = img.expand(4, 3, 64, 64).contiguous().to(device)
    lut = _lut(1, 17).to(device)
    grad_out = torch.randn(img.shape, generator=_gen(11)).to(device)
    for interpolation in ("trilinear", "tetrahedral"):
        fn = _triton(interpolation)
        _, dimg1, dlut1 = _run(fn, img, lut, grad_out)
        _, dimg2, dlut2 = _run(fn, img, lut, grad_out)
        assert torch.equal(dlut1, dlut2) and torch.equal(dimg1, dimg2)
        want = _reference(img, lut, grad_out, interpolation)[2]
        torch.testing.assert_close(dlut1, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("n_luts", [1, 2], ids=["shared", "per-image"])
def test_run_aggregation_changes_no_bit(device, interpolation, n_luts, monkeypatch):
    """Summing runs of neighbouring pixels on the same lattice point before the atomics (the GPU default)
    gives bitwise the same gradients as one atomic per pixel, and the reference's. The image has runs,
    a NaN pixel inside one, values outside [0, 1], and padding lanes (66 pixels in a block of 128) that
    continue the last pixel's run."""
    ramp = torch.linspace(-0.1, 1.1, 11)
    img = torch.stack([ramp.expand(6, 11), ramp.flip(0).expand(6, 11), torch.full((6, 11), 0.3)])
    img = torch.stack([img, img.roll(3, dims=2)])
    img[0, 1, 2, 5] = float("nan")
    img[:, :, -1, -1] = 0.05  # the padding lanes' cell: the run goes on past the image's last pixel
    img, lut = img.to(device), _lut(n_luts, 5).to(device)
    grad_out = torch.randn(img.shape, generator=_gen(13)).to(device)
    _check_run_aggregation(img, lut, grad_out, interpolation, monkeypatch)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the interpreter's numpy
def test_non_finite_output_gradient_propagates_like_the_reference(device):
    """A NaN or inf in grad_out switches the LUT gradient to float32 atomics (fixed point cannot hold
    them): NaN/inf reach the same lattice points as in the reference, the rest stays close to it, and two
    runs agree within float32 rounding (their order of additions may differ on a GPU)."""
    img, lut = _image(2, 16, 16, 5).to(device), _lut(2, 5).to(device)
    grad_out = torch.randn(img.shape, generator=_gen(12))
    grad_out[0, 1, 3, 4], grad_out[1, 0, 7, 7] = float("nan"), float("inf")
    grad_out = grad_out.to(device)
    fn = _triton("trilinear")
    dlut1 = _run(fn, img, lut, grad_out)[2]
    dlut2 = _run(fn, img, lut, grad_out)[2]
    want = _reference(img, lut, grad_out, "trilinear")[2]
    assert want.isnan().any() and want.isfinite().any()
    torch.testing.assert_close(dlut1, want, equal_nan=True, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dlut1, dlut2, equal_nan=True, rtol=1e-5, atol=1e-5)


def test_any_strides(device):
    """Channels-last images, a LUT view with a gap between entries and an expanded (stride-0) batch."""
    img = _image(3, 10, 12, 5).to(device).to(memory_format=torch.channels_last)
    padded = torch.zeros(3, 5, 5, 5, 4, device=device)
    padded[..., :3] = _lut(3, 5).to(device)
    _assert_matches_reference(
        _triton("tetrahedral"), img, padded[..., :3], "tetrahedral",
        TOL[torch.float32],
    )
    _assert_matches_reference(
        lambda i, lt: apply_lut_triton(i, lt.expand(3, -1, -1, -1, -1), "trilinear"), img,
        _lut(1, 5).to(device), "trilinear", TOL[torch.float32],
    )


def test_float64_is_rejected_with_a_clear_error(device):
    img, lut = _image(1, 4, 4, 3).to(device), _lut(1, 3).to(device)
    with pytest.raises(TypeError, match="float64.*backend='torch'"):
        apply_lut(img.double(), lut.double(), backend="triton")
    with pytest.raises(TypeError, match="lut dtype torch.float64"):
        apply_lut_triton(img, lut.double())
