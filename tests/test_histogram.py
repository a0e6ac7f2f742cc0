"""lutkern.channel_histogram against its oracle (lutkern.reference.histogram) and exact counts."""

import pytest
import torch

import lutkern
from lutkern.reference.histogram import channel_histogram_reference


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("bins", [2, 17, 256, 1024])
def test_float_images_match_the_oracle(dtype, bins):
    gen = torch.Generator().manual_seed(bins)
    images = (torch.rand(2, 3, 7, 13, generator=gen) * 1.4 - 0.2).to(dtype)
    images[0, 1, 2, 3] = float("nan")
    images[1, 2, 0, :4] = torch.tensor([0.0, 1.0, -0.0, float("inf")], dtype=dtype)
    got = lutkern.channel_histogram(images, bins)
    assert got.dtype == torch.int64 and got.shape == (2, 3, bins)
    torch.testing.assert_close(got, channel_histogram_reference(images, bins), rtol=0, atol=0)
    # every non-NaN pixel counted once
    torch.testing.assert_close(got.sum(-1), (~images.isnan()).sum((-1, -2)).long(), rtol=0, atol=0)


def test_eight_bit_codes_land_one_per_bin():
    codes = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    floats = codes.float() / 255
    expected = torch.ones(1, 3, 256, dtype=torch.int64)
    torch.testing.assert_close(lutkern.channel_histogram(floats, 256), expected, rtol=0, atol=0)
    torch.testing.assert_close(lutkern.channel_histogram(codes, 256), expected, rtol=0, atol=0)
    sixteen = torch.arange(0, 65536, 257, dtype=torch.int32).view(1, 1, 16, 16)
    counts = lutkern.channel_histogram(sixteen.float() / 65535, 65536)
    assert counts.sum() == 256 and int(counts[0, 0, 257]) == 1 and int(counts[0, 0, 256]) == 0


def test_ties_round_half_to_even_and_out_of_range_clamps():
    # 0.5 scaled by 2 bins-1 = 1 -> 0.5 is exact: round half to even gives bin 0
    images = torch.tensor([0.5, 0.75, -3.0, 7.0, 0.25]).view(1, 1, 1, 5)  # bins 0, 1(0.75->1), 0, 1, 0
    got = lutkern.channel_histogram(images, 2)
    torch.testing.assert_close(got, torch.tensor([[[3, 2]]]), rtol=0, atol=0)
    got4 = lutkern.channel_histogram(torch.tensor([0.5]).view(1, 1, 1), 4)  # 1.5 -> 2
    assert got4.tolist() == [[0, 0, 1, 0]]


def test_unbatched_and_empty():
    img = torch.rand(4, 5, 6)
    torch.testing.assert_close(lutkern.channel_histogram(img, 8), lutkern.channel_histogram(img[None], 8)[0])
    empty = lutkern.channel_histogram(torch.zeros(2, 3, 0, 5), 8)
    assert empty.shape == (2, 3, 8) and int(empty.sum()) == 0


@pytest.mark.parametrize("bad, message", [
    (dict(images=[[0.0]]), "torch.Tensor"),
    (dict(images=torch.zeros(2, 2, dtype=torch.bool)), "dtype"),
    (dict(images=torch.zeros(5)), "shape"),
    (dict(images=torch.zeros(1, 1, 1), bins=1), "bins"),
    (dict(images=torch.zeros(1, 1, 1), bins=True), "bins"),
    (dict(images=torch.zeros(1, 1, 1), bins=70000), "bins"),
    (dict(images=torch.zeros(1, 1, 1, dtype=torch.uint8), bins=16), "256"),
    (dict(images=torch.full((1, 1, 1), 16, dtype=torch.int32), bins=16), r"\[0, 16\)"),
    (dict(images=torch.full((1, 1, 1), -1, dtype=torch.int16), bins=16), r"\[0, 16\)"),
])
def test_bad_input_is_refused_naming_the_problem(bad, message):
    with pytest.raises((TypeError, ValueError), match=message):
        lutkern.channel_histogram(**bad)
