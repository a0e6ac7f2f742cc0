"""The adaptive recipe's first stage (img2lut.readout): the read written into the head is the clamped linear
read, the choice rule is Breiman's, and on pairs whose grade strength follows a statistic the readout
recovers it on photographs it never saw."""

import math

import pytest
import torch

import lutkern
from img2lut import readout
from img2lut.image_stats import STATS_DIM, image_stats, saturation_mean
from img2lut.losses import LossWeights
from img2lut.model import ResNetLUTGenerator


def _head_weights(model, stats):
    """The basis weights the head gives ``stats`` (random pooled features: they must not count)."""
    features = torch.cat([torch.randn(len(stats), 256), 2 * stats - 1], 1)
    return torch.tanh(model.weight_generator(features))[:, :model.basis_luts]


def test_written_read_is_the_clamped_linear_read():
    torch.manual_seed(0)
    model = ResNetLUTGenerator(5, head="basis", basis_luts=3)
    stats = torch.rand(64, STATS_DIM)
    features = 2 * stats.double() - 1
    read = readout.ridge(features, torch.randn(64, 2, dtype=torch.float64) * 0.3, 0.01)
    lo = torch.tensor([-0.2, -0.5], dtype=torch.float64)
    hi = torch.tensor([0.3, 0.1], dtype=torch.float64)
    with torch.no_grad():
        readout._write(model, read, lo, hi)
        got = _head_weights(model, stats)
    want = torch.maximum(torch.minimum(read(features), hi), lo)
    clamped = ((read(features) < lo) | (read(features) > hi)).float().mean()
    assert 0.1 < clamped < 0.9  # both the clamp and the linear part are exercised
    torch.testing.assert_close(got[:, :2].double(), want, atol=1e-3, rtol=0)
    # The third weight is not read: its output row keeps its random init (free to learn), its basis is zero.
    assert model.weight_generator[-1].weight[2].abs().sum() > 0


def test_a_constant_weight_is_written_as_its_value():
    model = ResNetLUTGenerator(5, head="basis", basis_luts=1)
    targets = torch.full((8, 1), 0.25, dtype=torch.float64)
    read = readout.ridge(torch.rand(8, STATS_DIM).double(), targets, 1.0)
    value = torch.tensor([0.25], dtype=torch.float64)
    with torch.no_grad():
        readout._write(model, read, value, value)
        got = _head_weights(model, torch.rand(4, STATS_DIM))
    torch.testing.assert_close(got, torch.full((4, 1), 0.25), atol=1e-6, rtol=0)


def test_choice_is_the_simplest_within_one_standard_error():
    folds = [torch.arange(12) // 4 == f for f in range(3)]
    noise = torch.tensor([0.0, 0.3, -0.3, 0.1] * 3, dtype=torch.float64)
    fold_offset = torch.repeat_interleave(torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64), 4)
    scores = {(0, 1, 0.1): 30 + noise, (1, 1, 0.1): 40 + noise + fold_offset,
              (1, 1, 1.0): 40.2 + noise + fold_offset, (3, 2, 0.1): 40.4 + noise + fold_offset}
    # The best (40.4) less its folds' standard error (1 / sqrt(3) = 0.58): 1 weight is within it, and of
    # its two ridges the stronger is within too.
    assert readout._choose(scores, folds) == (1, 1, 1.0)
    scores[3, 2, 0.1] = scores[3, 2, 0.1] + 2  # now clearly better than one weight
    assert readout._choose(scores, folds) == (3, 2, 0.1)


def test_folds_hold_out_whole_groups():
    groups = [f"p{i % 11}" for i in range(40)]
    folds = readout._folds(groups)
    assert len(folds) == readout.MAX_FOLDS
    assert torch.stack(folds).sum(0).eq(1).all()  # every pair held out exactly once
    for held in folds:
        inside = {groups[i] for i in range(40) if held[i]}
        outside = {groups[i] for i in range(40) if not held[i]}
        assert inside and not inside & outside


def _photos(count: int, seed: int) -> torch.Tensor:
    """``(count,3,16,16)`` images from grey to saturated: random colours mixed with their grey."""
    gen = torch.Generator().manual_seed(seed)
    colours = torch.rand(count, 3, 16, 16, generator=gen)
    grey = colours.mean(1, keepdim=True).expand_as(colours)
    amount = torch.rand(count, 1, 1, 1, generator=gen)
    return grey + amount * (colours - grey)


def _graded(images: torch.Tensor) -> torch.Tensor:
    """A look applied the more strongly, the less saturated each image (clamped to [0, 1])."""
    look = lutkern.looks["teal_orange"](size=9)
    strength = (1.2 - 3 * saturation_mean(image_stats(images))).clamp(0, 1).view(-1, 1, 1, 1)
    return images + strength * (lutkern.apply_lut(images, look) - images)


def test_readout_learns_a_strength_that_follows_a_statistic(monkeypatch):
    monkeypatch.setattr(readout, "STEPS", 300)
    monkeypatch.setattr(readout, "MIN_STEPS", 300)  # few pixels: more steps than their passes call for
    monkeypatch.setattr(readout, "STAGE_STEPS", 100)
    monkeypatch.setattr(readout, "RANKS", (1, 2))
    torch.manual_seed(0)
    train, held = _photos(48, 0), _photos(16, 1)
    model = ResNetLUTGenerator(9, head="basis", basis_luts=2)
    shared = lutkern.identity_lut(9)  # the first stage's LUT
    model.start_at(shared)
    found = readout.fit_readout(model, train, _graded(train), image_stats(train),
                                [f"photo{i // 4}" for i in range(48)], LossWeights(tv=1e-3, mono=1e-3))
    assert found.components >= 1 and found.cv_db > found.shared_cv_db + 5
    model.eval()
    with torch.no_grad():
        out, _ = model(held, stats=image_stats(held))
        looked = lutkern.apply_lut(held, lutkern.looks["teal_orange"](size=9))
    target = _graded(held)

    def psnr(x):
        return float(-10 * torch.log10((x - target).square().mean()))
    # On images it never saw, the read strength beats the look at any one strength by far.
    constant = max(psnr(held + s * (looked - held)) for s in torch.linspace(0, 1, 11))
    assert psnr(out) > constant + 8, (psnr(out), constant)


def test_one_photograph_allows_no_readout():
    model = ResNetLUTGenerator(5, head="basis", basis_luts=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.rand(6, 3, 8, 8)
    assert readout.fit_readout(model, images, images, image_stats(images), ["one"] * 6, LossWeights()) is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_too_many_bases_for_the_head_is_an_error():
    model = ResNetLUTGenerator(5, head="basis", basis_luts=64)
    images = torch.rand(4, 3, 8, 8)
    with pytest.raises(ValueError, match="hidden units"):
        readout.fit_readout(model, images, images, image_stats(images), list("abcd"), LossWeights())


def test_principal_directions_keep_every_pair_lut():
    torch.manual_seed(0)
    tables = readout._Tables(torch.rand(5**3 * 3), torch.randn(3, 5**3 * 3))
    codes = torch.randn(10, 3)
    coverage = torch.rand(5**3 * 3) + 0.1
    rotated, weights = readout._principal(tables, codes, coverage)
    torch.testing.assert_close(rotated.luts(weights, 5), tables.luts(codes, 5), atol=1e-4, rtol=0)
    assert math.isclose(float(weights.abs().amax()), readout.CODE_RANGE, rel_tol=1e-5)
    # Ordered by how much each direction moves the (coverage-weighted) LUTs.
    spread = [float((weights[:, i:i + 1] * rotated.basis[i] * coverage.sqrt()).norm()) for i in range(3)]
    assert spread == sorted(spread, reverse=True)


def test_cross_validation_reads_held_out_photos_within_the_training_range():
    """A held-out photo whose statistics lie past the training ones gets the largest weight seen, not a
    linear extrapolation: its score is that of the clamped read."""
    torch.manual_seed(0)
    size = 5
    look = lutkern.looks["teal_orange"](size=size).reshape(-1)
    identity = lutkern.identity_lut(size).reshape(-1)
    tables = readout._Tables(identity.clone(), (look - identity).unsqueeze(0))
    stats = torch.full((12, STATS_DIM), 0.5)
    stats[:, 0] = torch.linspace(0.3, 0.7, 12)  # the statistic the weight follows
    stats[10:, 0] = 1.0  # two pairs far past the others
    weights = ((stats[:, :1] - 0.5) * 5).clamp(max=0.5).double()  # the grade itself saturates at 0.5
    lx = torch.rand(12, 3, 256)
    with torch.no_grad():
        y, _ = readout._through(ResNetLUTGenerator(size, head="basis", basis_luts=1), tables, weights, lx)
    folds = readout._folds([f"p{i // 2}" for i in range(12)])  # the last fold: the two far pairs
    model = ResNetLUTGenerator(size, head="basis", basis_luts=1)
    scores = readout._cross_validate(model, tables, weights, 2 * stats.double() - 1, lx, y, folds)
    assert float(scores[1, readout.RIDGES[0]][10:].min()) > 50  # read at 0.5, the largest weight seen


def test_a_given_choice_is_refitted_without_cross_validation(monkeypatch):
    monkeypatch.setattr(readout, "_cross_validate", lambda *a: pytest.fail("cross-validated again"))
    chosen = readout.Readout(1, 1, 0.1, 50.0, 40.0, 10, 2, {"1": 50.0})
    model = ResNetLUTGenerator(5, head="basis", basis_luts=4)
    model.start_at(lutkern.identity_lut(5))
    images = _photos(6, 0)
    found = readout.fit_readout(model, images, _graded(images), image_stats(images), ["one"] * 6,
                                LossWeights(), choice=chosen)
    assert found == readout.Readout(1, 1, 0.1, 50.0, 40.0, 6, 2, {"1": 50.0})
    assert model.basis[0].abs().sum() > 0 and model.basis[1:].abs().sum() == 0
