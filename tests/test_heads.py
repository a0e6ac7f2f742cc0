"""The basis and curves heads of ResNetLUTGenerator (their levels curves and the statistics they read), and
the colour histogram of video shots: each checked against a hand-built case or the plain oracle
(lutkern.reference, numpy's quantiles), never against the head's own code."""

import math

import numpy as np
import pytest
import torch

import lutkern
from img2lut.image_stats import STATS_DIM, image_stats
from img2lut.model import HISTOGRAM_BINS, LEVELS_OUTPUTS, ResNetLUTGenerator, colour_histogram
from lutkern.reference.apply import apply_lut_reference

S, K = 5, 3


def _fixed_outputs(model: ResNetLUTGenerator, values: torch.Tensor) -> None:
    """Make the head's last Linear emit ``values`` (before its tanh; zeros after them) whatever the image."""
    last = model.weight_generator[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[:len(values)] = values


def test_histogram_by_hand():
    x = torch.empty(1, 3, 2, 2)
    x[0, 0] = 0.5  # red: all on the middle centre of bins 0, 0.5, 1
    x[0, 1] = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # green: half on each end
    x[0, 2] = torch.tensor([[0.25, 0.25], [-3.0, 7.0]])  # blue: split halfway; out of range clamps
    h = colour_histogram(x, bins=3)
    # Mean weight per centre, times 3 bins. Blue: each 0.25 gives half to centre 0 and half to 0.5; -3
    # counts as 0 and 7 as 1: ((0.5 + 0.5 + 1) / 4, (0.5 + 0.5) / 4, 1 / 4) x 3.
    expected = torch.tensor([[[0.0, 3.0, 0.0], [1.5, 0.0, 1.5], [1.5, 0.75, 0.75]]])
    torch.testing.assert_close(h, expected)
    assert colour_histogram(torch.rand(2, 3, 7, 9)).shape == (2, 3, HISTOGRAM_BINS)


@pytest.mark.parametrize("head", ["basis", "curves"])
def test_every_image_starts_exactly_at_the_shared_lut(head):
    torch.manual_seed(0)
    model = ResNetLUTGenerator(S, head=head, basis_luts=K).eval()
    look = lutkern.looks["teal_orange"](S)
    model.start_at(look)
    with torch.no_grad():
        luts = model.predict_lut(torch.rand(3, 3, 16, 16))
    # Identity levels (and curves) through trilinear interpolation at the lattice points: float rounding.
    torch.testing.assert_close(luts, look.expand_as(luts), atol=1e-6, rtol=0)


def test_basis_head_is_the_shared_lut_plus_bounded_weighted_bases():
    torch.manual_seed(0)
    model = ResNetLUTGenerator(S, head="basis", basis_luts=K).eval()
    base, bases = torch.rand(S, S, S, 3), torch.randn(K, S, S, S, 3)
    raw = torch.tensor([0.3, -2.0, 40.0])  # tanh: 0.291, -0.964, 1.0
    with torch.no_grad():
        model.base_lut.copy_(base.reshape(-1))
        model.basis.copy_(bases.reshape(K, -1))
    _fixed_outputs(model, raw)
    with torch.no_grad():
        lut = model.predict_lut(torch.rand(2, 3, 16, 16))
    expected = base + sum(math.tanh(float(raw[k])) * bases[k] for k in range(K))
    torch.testing.assert_close(lut, expected.expand_as(lut))
    # The weights are bounded: however far the network's outputs go, no LUT leaves base +- sum |basis|.
    _fixed_outputs(model, torch.tensor([1e6, -1e6, 1e6]))
    with torch.no_grad():
        far = model.predict_lut(torch.rand(1, 3, 16, 16))[0]
    assert ((far - base).abs() <= bases.abs().sum(0) + 1e-6).all()


def test_basis_rows_are_in_cube_order():
    model = ResNetLUTGenerator(3, head="basis", basis_luts=1).eval()
    with torch.no_grad():
        model.base_lut.zero_()
        model.basis.zero_()
        model.basis[0, 3 * (2 + 3 * (0 + 3 * 1)) + 1] = 1.0  # r=2, g=0, b=1, green channel
    _fixed_outputs(model, torch.tensor([50.0]))
    with torch.no_grad():
        lut = model.predict_lut(torch.rand(1, 3, 16, 16))
    expected = torch.zeros_like(lut)
    expected[0, 1, 0, 2, 1] = 1.0
    torch.testing.assert_close(lut, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral"])
def test_curves_head_composes_curves_then_the_3d_lut_at_the_lattice(interpolation):
    torch.manual_seed(1)
    model = ResNetLUTGenerator(S, interpolation=interpolation, head="curves", basis_luts=K).eval()
    table = torch.rand(S, S, S, 3)
    with torch.no_grad():
        model.base_lut.copy_(table.reshape(-1))
        model.basis.zero_()
    knots = torch.linspace(0, 1, S)
    curves = torch.stack([knots**0.5, knots**2, (knots * 0.8 + 0.1)])  # (3,S): r, g, b
    # Offsets enter through tanh: the head's raw outputs are atanh(curve - identity).
    raw = torch.cat([torch.zeros(K + LEVELS_OUTPUTS), torch.atanh(curves - knots).reshape(-1)])
    _fixed_outputs(model, raw)
    with torch.no_grad():
        lut = model.predict_lut(torch.rand(1, 3, 16, 16))[0]
    for b in range(S):
        for g in range(S):
            for r in range(S):
                colour = torch.stack([curves[0, r], curves[1, g], curves[2, b]]).view(1, 3, 1, 1)
                want = apply_lut_reference(colour, table[None], interpolation).view(3)
                torch.testing.assert_close(lut[b, g, r], want, atol=1e-6, rtol=0,
                                           msg=lambda m, p=(r, g, b): f"lattice point r,g,b={p}: {m}")
    # Curves are clamped to [0,1]: an offset pushing past 1 stays on the LUT's edge.
    _fixed_outputs(model, torch.cat([torch.zeros(K + LEVELS_OUTPUTS), torch.full((3 * S,), 20.0)]))
    with torch.no_grad():
        top = model.predict_lut(torch.rand(1, 3, 16, 16))[0]
    torch.testing.assert_close(top, table[-1, -1, -1].expand_as(top), atol=1e-6, rtol=0)


@pytest.mark.parametrize("head", ["basis", "curves"])
def test_gradients_reach_the_tables_and_the_network(head):
    torch.manual_seed(0)
    model = ResNetLUTGenerator(S, head=head, basis_luts=K)
    with torch.no_grad():
        model.basis.normal_(std=0.1)  # zero bases would give the blend weights no gradient
    out, _ = model(torch.rand(4, 3, 16, 16))
    out.square().mean().backward()
    for name in ("base_lut", "basis", "weight_generator.2.weight", "initial_conv.0.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_compact_heads_are_a_fraction_of_the_direct_head():
    def count(**kw):
        with torch.device("meta"):
            return sum(p.numel() for p in ResNetLUTGenerator(33, **kw).parameters())

    backbone = 896 + 64 + 18_496 + 128 + 36_928 + 128 + 2_112 + 128 + 73_856 + 256 + 147_584 + 256 \
        + 8_320 + 256 + 295_168 + 512 + 590_080 + 512 + 33_024 + 512  # the seed's table (test_model.py)
    features = 256 + 3 * (17 + 2) + 6  # pooled; 17 quantiles, mean, std per channel; 6 joint statistics
    assert STATS_DIM == features - 256
    lut = 33**3 * 3
    outputs = 8 + 9  # blend weights; (lo, hi, gamma) per channel
    assert count(head="basis", basis_luts=8) == (backbone + features * 512 + 512 + 512 * outputs + outputs
                                                 + 9 * lut)
    assert count(head="curves", basis_luts=8) == (backbone + features * 512 + 512 + 512 * (outputs + 99)
                                                  + outputs + 99 + 9 * lut)
    assert count(head="direct") == backbone + 256 * 512 + 512 + 512 * lut + lut
    assert count(head="basis") < count(head="direct") / 20


@pytest.mark.parametrize("kwargs", [{"head": "mlp"}, {"head": "basis", "basis_luts": 0},
                                    {"head": "basis", "basis_luts": True}])
def test_bad_head_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        ResNetLUTGenerator(S, **kwargs)


def _levelled(colour: torch.Tensor, lo, hi, gamma) -> torch.Tensor:
    """The levels curve of one channel value, by hand."""
    return min(max((colour - lo) / (hi - lo), 0.0), 1.0) ** gamma


@pytest.mark.parametrize("head", ["basis", "curves"])
def test_levels_start_at_the_correction_read_off_the_full_image(head):
    """normalise="levels_0.5": each channel's 0.5 / 99.5 percentiles (numpy's inverted-CDF quantiles of
    the 8-bit codes) go to 0 / 1 before the 3D LUT, at every lattice point."""
    gen = torch.Generator().manual_seed(3)
    codes = (torch.rand(1, 3, 40, 50, generator=gen) ** torch.tensor([0.5, 1.0, 2.0]).view(1, 3, 1, 1)
             * 200 + 30).round()
    image = codes / 255
    model = ResNetLUTGenerator(S, head=head, basis_luts=K, normalise="levels_0.5").eval()
    table = torch.rand(S, S, S, 3, generator=gen)
    with torch.no_grad():
        model.base_lut.copy_(table.reshape(-1))
        lut = model.predict_lut(torch.rand(1, 3, 16, 16), image_stats(image))[0]
    flat = codes[0].reshape(3, -1).numpy()
    lo = [np.quantile(c, 0.005, method="inverted_cdf") / 255 for c in flat]
    hi = [np.quantile(c, 0.995, method="inverted_cdf") / 255 for c in flat]
    knots = torch.linspace(0, 1, S)
    for b, g, r in [(0, 0, 0), (4, 4, 4), (1, 2, 3), (3, 0, 4), (2, 2, 2)]:
        colour = torch.tensor([_levelled(float(knots[i]), lo[c], hi[c], 1.0)
                               for c, i in enumerate((r, g, b))])
        want = apply_lut_reference(colour.view(1, 3, 1, 1), table[None], "trilinear").view(3)
        torch.testing.assert_close(lut[b, g, r], want, atol=1e-5, rtol=0)


def test_the_head_moves_black_white_and_gamma_within_bounds():
    """Levels offsets: lo + 0.25 tanh, hi + 0.25 tanh, gamma * exp(tanh), per channel (r, g, b)."""
    model = ResNetLUTGenerator(S, head="basis", basis_luts=K).eval()
    table = lutkern.identity_lut(S)
    with torch.no_grad():
        model.base_lut.copy_(table.reshape(-1))
    raw = torch.zeros(K + LEVELS_OUTPUTS)
    raw[K + 0] = math.atanh(0.4)  # red black point 0 -> 0.1
    raw[K + 4] = math.atanh(-0.8)  # green white point 1 -> 0.8
    raw[K + 8] = math.atanh(math.log(2.0))  # blue gamma 1 -> 2
    _fixed_outputs(model, raw)
    with torch.no_grad():
        lut = model.predict_lut(torch.rand(1, 3, 16, 16), torch.rand(1, STATS_DIM))[0]
    knots = torch.linspace(0, 1, S).tolist()
    for b, g, r in [(0, 0, 0), (4, 4, 4), (1, 2, 3), (2, 4, 1)]:
        want = torch.tensor([_levelled(knots[r], 0.1, 1.0, 1.0), _levelled(knots[g], 0.0, 0.8, 1.0),
                             _levelled(knots[b], 0.0, 1.0, 2.0)])
        torch.testing.assert_close(lut[b, g, r], want, atol=1e-5, rtol=0)
    # However far the outputs go, the black and white points move by at most 0.25, gamma by e.
    _fixed_outputs(model, torch.cat([torch.zeros(K), torch.full((LEVELS_OUTPUTS,), 1e6)]))
    with torch.no_grad():
        far = model.predict_lut(torch.rand(1, 3, 16, 16), torch.rand(1, STATS_DIM))[0]
    mid = knots[2]
    torch.testing.assert_close(far[2, 2, 2], torch.full((3,), ((mid - 0.25) / (1.25 - 0.25)) ** math.e),
                               atol=1e-5, rtol=0)
