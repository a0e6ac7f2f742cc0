"""Strength: lutkern.lut_at_strength, apply_lut(strength=), lutkern.grading.at_strength and the
--strength flag of lutkern.apply, img2lut.predict and lutkern.show.

The claim checked everywhere: a LUT at strength S moves each pixel S of the way from its value (clamped to
the LUT's domain) to its full-strength grade, computed here independently as that blend of two images."""

import math

import numpy as np
import pytest
import torch

import lutkern
from lutkern._backend import triton_unusable_reason
from lutkern.cube import CubeLUT, read_cube, write_cube
from lutkern.grading import Blend, at_strength, grade_codes, sample_lut
from lutkern.imageio import decode_image, write_codes
from lutkern.ops.apply_lut_cpu import native_available

BACKENDS = ["eager"] + (["compiled"] if native_available() else []) + ["triton"]


def _lut(d: int, seed: int = 0, batch: int | None = None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (d, d, d, 3) if batch is None else (batch, d, d, d, 3)
    return (lutkern.identity_lut(d) ** 0.6 + 0.2 * torch.randn(shape, generator=gen)).float()


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Every backend: the torch backend's eager ops and its compiled C loop, and Triton's interpreter."""
    if request.param == "eager":
        monkeypatch.setenv("LUTKERN_NATIVE", "0")
    if request.param == "triton":
        pytest.importorskip("triton")
        if triton_unusable_reason(torch.device("cpu"), explicit=True) is not None:
            pytest.skip("Triton needs TRITON_INTERPRET=1 on CPU tensors")
        return "triton"
    return "torch"


def test_ends_are_exactly_the_identity_and_the_lut():
    lut = _lut(7)
    assert torch.equal(lutkern.lut_at_strength(lut, 0.0), lutkern.identity_lut(7))
    assert torch.equal(lutkern.lut_at_strength(lut, 1), lut)
    half = lutkern.lut_at_strength(lut.double(), 0.25)
    assert torch.allclose(half, lutkern.identity_lut(7, dtype=torch.float64) * 0.75 + lut.double() * 0.25,
                          atol=1e-15)


@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral"])
def test_applying_the_blended_lut_blends_the_pixels(interpolation, backend):
    gen = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 13, 17, generator=gen)
    image[0, :, 0, :3] = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 0.5], [0.0, 1.0, 1.0]])  # the edges
    for lut, strength in [(_lut(5), 0.3), (_lut(9, batch=2), 0.7), (_lut(6), torch.tensor([0.2, 0.9])),
                          (_lut(4, batch=2), torch.tensor([0.0, 0.55]))]:
        graded = lutkern.apply_lut(image, lut, backend=backend, interpolation=interpolation)
        s = strength.view(-1, 1, 1, 1) if isinstance(strength, torch.Tensor) else strength
        expected = image + s * (graded - image)
        got = lutkern.apply_lut(image, lut, backend=backend, interpolation=interpolation, strength=strength)
        assert torch.allclose(got, expected, atol=3e-6, rtol=0), (got - expected).abs().max()


def test_gradients_in_float64():
    gen = torch.Generator().manual_seed(3)
    image = torch.rand(2, 3, 3, 4, generator=gen, dtype=torch.float64).requires_grad_()
    lut = _lut(3, batch=2).double().requires_grad_()
    shared = _lut(3, seed=4).double().requires_grad_()
    strength = torch.tensor([0.3, 0.8], dtype=torch.float64, requires_grad=True)
    for interp in ("trilinear", "tetrahedral"):
        def f(x, t, s, i=interp):
            return lutkern.apply_lut(x, t, interpolation=i, backend="torch", strength=s)

        assert torch.autograd.gradcheck(f, (image, lut, strength))
        assert torch.autograd.gradcheck(f, (image, shared, strength))
        assert torch.autograd.gradcheck(lambda x, t, f=f: f(x, t, 0.35), (image, shared))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -0.01, 1.0001, 2])
def test_out_of_range_strength_is_refused(bad):
    with pytest.raises(ValueError, match="strength must be in"):
        lutkern.apply_lut(torch.rand(3, 2, 2), _lut(3), strength=bad)
    with pytest.raises(ValueError, match="strength must be in"):
        lutkern.apply_lut(torch.rand(2, 3, 2, 2), _lut(3), strength=torch.tensor([0.5, bad]))
    with pytest.raises(ValueError, match="strength must be in"):
        at_strength(CubeLUT(_lut(3)), bad)


def test_malformed_strength_is_refused():
    image, lut = torch.rand(2, 3, 2, 2), _lut(3)
    with pytest.raises(TypeError, match="number or a tensor"):
        lutkern.apply_lut(image, lut, strength="0.5")
    with pytest.raises(TypeError, match="number or a tensor"):
        lutkern.apply_lut(image, lut, strength=True)
    with pytest.raises(TypeError, match="float tensor"):
        lutkern.apply_lut(image, lut, strength=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="one value per image"):
        lutkern.apply_lut(image, lut, strength=torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match="one value per image"):
        lutkern.apply_lut(image[0], lut, strength=torch.tensor([0.5]))
    with pytest.raises(ValueError, match=r"\(\) or \(B,\) tensor"):
        lutkern.lut_at_strength(lut, torch.full((2, 2), 0.5))


def _clamped(x: torch.Tensor, domain) -> torch.Tensor:
    lo, hi = (torch.tensor(v, dtype=x.dtype).view(3, 1, 1) for v in domain)
    return torch.maximum(torch.minimum(x, hi), lo)


@pytest.mark.parametrize("kind", ["3d", "3d-domain", "shaper", "shaper+3d"])
@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral"])
def test_a_cube_at_strength_blends_each_pixel_with_its_value_clamped_to_the_domain(kind, interpolation):
    gen = torch.Generator().manual_seed(5)
    shaper = (torch.linspace(0, 1, 17).view(-1, 1) ** torch.tensor([0.5, 0.45, 0.4])).double()
    cube = {
        "3d": CubeLUT(_lut(6).double()),
        "3d-domain": CubeLUT(_lut(6).double(), lut3d_domain=((-0.5, -0.25, 0.0), (3.0, 2.0, 4.0))),
        "shaper": CubeLUT(None, shaper, shaper_domain=((-0.1,) * 3, (5.0,) * 3)),
        "shaper+3d": CubeLUT(_lut(6).double(), shaper, shaper_domain=((-0.1,) * 3, (5.0,) * 3)),
    }[kind]
    domain = cube.shaper_domain if cube.shaper is not None else cube.lut3d_domain
    x = torch.rand(3, 9, 11, generator=gen, dtype=torch.float64) * 7 - 1  # inside and outside the domain
    for s in (0.0, 0.4, 1.0):
        blended = at_strength(cube, s)
        assert isinstance(blended, Blend) == (kind == "shaper+3d" and s < 1)
        graded = cube.apply(x, interpolation=interpolation, backend="torch")
        expected = _clamped(x, domain) + s * (graded - _clamped(x, domain))
        got = blended.apply(x, interpolation=interpolation, backend="torch")
        assert torch.allclose(got, expected, atol=1e-12, rtol=0), (kind, s, (got - expected).abs().max())


def test_grading_codes_at_strength_uses_the_blended_table_in_the_fast_loop():
    codes = np.random.default_rng(0).integers(0, 256, (20, 31, 3), dtype=np.uint8)
    lut = at_strength(CubeLUT(_lut(9)), 0.6)
    fast = grade_codes(codes.copy(), lut)
    strips = grade_codes(codes.copy(), lut, backend="torch", device="cpu", strip_pixels=64)
    image = torch.from_numpy(codes).permute(2, 0, 1).double() / 255
    graded = CubeLUT(_lut(9).double()).apply(image, backend="torch")
    expected = np.round(((image + 0.6 * (graded - image)).clamp(0, 1) * 255).permute(1, 2, 0).numpy())
    assert np.abs(fast.astype(int) - expected).max() <= 1
    assert np.array_equal(fast, strips) or np.abs(fast.astype(int) - strips).max() <= 1


# ------------------------------------------------------------------------------------------ command lines


def _commands():
    from img2lut.predict import main as predict_main
    from lutkern.apply import main as apply_main
    from lutkern.show import main as show_main

    return {"apply": apply_main, "predict": predict_main, "show": show_main}


@pytest.mark.parametrize("command", ["apply", "predict", "show"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "-0.5", "1.01", "half", ""])
def test_the_strength_flag_refuses_what_is_not_a_number_in_0_1(command, value, tmp_path, capsys):
    argv = {"apply": ["--lut", "teal_orange", "x.png", "--out", str(tmp_path)],
            "predict": ["model.pt", "x.png", "--out", str(tmp_path)],
            "show": ["teal_orange", "--out", str(tmp_path / "x.png")]}[command]
    with pytest.raises(SystemExit) as exit_:
        _commands()[command]([*argv, "--strength", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--strength" in err and err.endswith("(see --help)")
    assert not any(tmp_path.iterdir())


def test_apply_at_strength_matches_the_blend_of_the_two_images(tmp_path):
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 65536, (9, 14, 3), dtype=np.uint16)
    write_codes(tmp_path / "a.png", codes)
    write_cube(tmp_path / "look.cube", _lut(7), precision=9)
    assert _commands()["apply"](["--lut", str(tmp_path / "look.cube"), str(tmp_path / "a.png"), "--out",
                                 str(tmp_path / "out"), "--strength", "0.35", "--device", "cpu"]) == 0
    got = decode_image(tmp_path / "out" / "a.png").codes.astype(np.int64)
    # The blend of the original and its full grade (before the grade is clamped to [0, 1] and rounded).
    x = torch.from_numpy(codes.astype(np.float64) / 65535).permute(2, 0, 1)
    graded = read_cube(tmp_path / "look.cube", dtype=torch.float64).apply(x, backend="torch")
    blend = (x + 0.35 * (graded - x)).clamp(0, 1).permute(1, 2, 0).numpy()
    assert np.abs(got - np.round(blend * 65535)).max() <= 1


def test_show_at_strength_0_pictures_the_identity(tmp_path):
    from lutkern.show import lut_picture

    look = CubeLUT(_lut(9), title="t")
    identity = np.asarray(lut_picture(CubeLUT(lutkern.identity_lut(9), title="t")))
    assert np.array_equal(np.asarray(lut_picture(at_strength(look, 0.0))), identity)
    assert not np.array_equal(np.asarray(lut_picture(at_strength(look, 0.5))), identity)
    # A shaper + 3D file: its transform at partial strength, sampled on a lattice.
    shaped = CubeLUT(_lut(5), torch.linspace(0, 1, 8).view(-1, 1).expand(8, 3).contiguous() ** 2)
    write_cube(tmp_path / "shaped.cube", shaped)
    assert _commands()["show"]([str(tmp_path / "shaped.cube"), "--out", str(tmp_path / "s.png"),
                                "--strength", "0"]) == 0
    lattice = sample_lut(at_strength(read_cube(tmp_path / "shaped.cube"), 0.0), 5)
    assert torch.allclose(lattice, lutkern.identity_lut(5, dtype=torch.float64), atol=1e-7)
