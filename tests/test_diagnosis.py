"""img2lut.diagnosis: what the default command decides from the pairs, on pairs whose grade is known."""

import pytest
import torch
import torch.nn.functional as F

import lutkern
from img2lut.diagnosis import ONE_LOOK_GAIN_DB, diagnose
from img2lut.grades import grade_lut, grade_of, mis_shoot


def _photos(count: int, size: int = 48, seed: int = 0) -> list[torch.Tensor]:
    """Smooth random 'photos' (bilinear upsampling of 6x6 random colours, from nearly grey to vivid),
    each mis-shot."""
    gen = torch.Generator().manual_seed(seed)
    small = torch.rand(count, 3, 6, 6, generator=gen) ** 1.5
    vivid = torch.linspace(0.05, 1, count).view(count, 1, 1, 1)
    small = small.mean(1, keepdim=True) + vivid * (small - small.mean(1, keepdim=True))
    photos = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    return [mis_shoot(p, gen) for p in photos]


def _graded(family: str, count: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = torch.stack(_photos(count))
    luts = torch.stack([grade_lut(grade_of(x, family), 17) for x in inputs])
    return inputs, lutkern.apply_lut(inputs, luts)


def test_one_look_for_the_same_look_on_every_pair():
    inputs = torch.stack(_photos(12))
    found = diagnose(inputs, lutkern.apply_lut(inputs, lutkern.looks["bw"](17)))
    assert found.recipe == "one_look" and found.normalise == "none"
    assert found.single_fit_db["none"] > 40
    assert found.to_dict()["text"].startswith("diagnosis: one look")


def test_a_grade_that_is_a_correction_then_a_look_is_one_look_after_that_correction():
    inputs, targets = _graded("levels")
    found = diagnose(inputs, targets)
    assert found.normalise == "levels_0.5" and found.recipe == "one_look"
    assert found.single_fit_db["levels_0.5"] > found.single_fit_db["none"] + 10


def test_a_look_whose_strength_follows_the_photo_is_adaptive():
    inputs, targets = _graded("saturation")
    found = diagnose(inputs, targets)
    assert found.recipe == "adaptive"
    assert found.gain_db >= ONE_LOOK_GAIN_DB
    assert "image-adaptive" in found.describe()


def test_a_normalising_grade_leaves_the_targets_more_alike_than_the_inputs():
    inputs, targets = _graded("grey_world")
    found = diagnose(inputs, targets)
    assert found.normalise == "grey_world"
    assert found.target_spread < 0.5 * found.input_spread


def test_a_given_correction_is_the_only_one_fitted():
    inputs, targets = _graded("extremes", count=6)
    found = diagnose(inputs, targets, normalise="auto_gamma")
    assert found.normalise == "auto_gamma" and set(found.single_fit_db) == {"auto_gamma"}


@pytest.mark.parametrize("family", ["auto_gamma", "extremes", "auto_tone"])
def test_the_correction_that_explains_a_family_is_found(family):
    inputs, targets = _graded(family)
    found = diagnose(inputs, targets)
    want = {"auto_gamma": "auto_gamma", "extremes": "stretch", "auto_tone": "levels_1+median_gamma"}[family]
    assert found.normalise == want
    if family == "auto_tone":  # levels at 1 / 99%, then a gamma read off the median: one look after it
        assert found.recipe == "one_look" and found.single_fit_db[want] > 45


def test_what_the_diagnosis_reads_across_batches_is_those_pixels_of_those_pairs():
    """Images read a batch at a time: the picked pixels of every image and the sampled images whole, every
    PIXEL_STRIDE-th pixel, the same as indexing the whole set (a sample past the first batch included)."""
    from img2lut.diagnosis import BATCH, PIXEL_STRIDE, _read

    images = torch.rand(BATCH + 9, 3, 7, 5, generator=torch.Generator().manual_seed(3))
    strided = images[..., ::PIXEL_STRIDE, ::PIXEL_STRIDE]
    picked, sample = torch.tensor([5, 0, 11]), torch.tensor([0, BATCH - 1, BATCH, BATCH + 8])
    stats, means, some, whole = _read(images, picked, sample, with_stats=True)
    torch.testing.assert_close(some, strided.flatten(2)[..., picked], atol=0, rtol=0)
    torch.testing.assert_close(whole, strided[sample], atol=0, rtol=0)
    assert stats.shape[0] == means.shape[0] == len(images)
