"""img2lut.decoding: an image decoded at the training size matches a full decode + resize, and keeps
its depth; img2lut.codes: codes index like the float tensors they stand for."""

import numpy as np
import pytest
import torch
from PIL import Image

from img2lut.codes import Codes
from img2lut.data import read_rgb, resize
from img2lut.decoding import OVERSAMPLE, decode_at_size, reduce_factor
from lutkern.imageio import draft_scale, write_image

# The reduced decode (JPEG DCT scaling or a box reduction, then the antialiased resize) against a full
# decode + the same resize, in 8-bit codes: the stored codes are rounded (0.25 code of mean error on
# their own), the filters differ a little at edges. Measured on the photos below: max 3.6, mean 0.36.
MAX_CODES, MEAN_CODES = 5.0, 0.45


def _photo(name: str) -> np.ndarray:
    data = pytest.importorskip("skimage.data", reason="could not import skimage (demo extra)")
    return getattr(data, name)()


def _upscaled(tmp_path, name: str, size: tuple[int, int], **save) -> str:
    """A real photo upscaled to ``size`` (width, height), saved as JPEG (or what ``save`` says)."""
    path = tmp_path / f"{name}{save.pop('suffix', '.jpg')}"
    Image.fromarray(_photo(name)).resize(size, Image.BICUBIC).save(path, **save)
    return path


def _codes_error(sized, reference: torch.Tensor) -> tuple[float, float]:
    values = torch.from_numpy(sized.codes.astype(np.float32)) / sized.scale
    diff = (values - reference).abs() * 255
    return float(diff.max()), float(diff.mean())


@pytest.mark.parametrize(("name", "size", "train"), [
    ("astronaut", (1024, 768), 64),  # DCT scaling 1/4
    ("coffee", (1026, 770), 64),  # sides not divisible by 4: 1/2 only (a partial block would shift)
    ("chelsea", (1024, 768), 32),  # 1/8, the most the JPEG decoder scales
    ("rocket", (1200, 900), 100),  # 1/4 again, another photo and size
])
def test_reduced_jpeg_decode_matches_full_decode_and_resize(tmp_path, name, size, train):
    path = _upscaled(tmp_path, name, size, quality=92)
    sized = decode_at_size(path, train)
    assert sized.codes.dtype == np.uint8 and sized.codes.shape == (3, train, train)
    assert sized.full_size == size
    worst, mean = _codes_error(sized, resize(read_rgb(path), train))
    assert worst <= MAX_CODES and mean <= MEAN_CODES, (worst, mean)


def test_reduced_png_decode_matches_full_decode_and_resize(tmp_path):
    path = _upscaled(tmp_path, "rocket", (960, 720), suffix=".png")
    assert reduce_factor(960, 720, 64) == 4
    worst, mean = _codes_error(decode_at_size(path, 64), resize(read_rgb(path), 64))
    assert worst <= MAX_CODES and mean <= MEAN_CODES, (worst, mean)


def test_16_bit_source_keeps_16_bits_through_the_reduction(tmp_path):
    ramp = torch.linspace(0, 1, 1024)
    pixels = torch.stack([ramp.expand(512, -1), ramp.flip(0).expand(512, -1), ramp.expand(512, -1) ** 2])
    write_image(tmp_path / "deep.png", pixels, bit_depth=16)
    sized = decode_at_size(tmp_path / "deep.png", 64)
    assert sized.codes.dtype == np.uint16 and sized.scale == 65535
    reference = resize(read_rgb(tmp_path / "deep.png"), 64)
    values = torch.from_numpy(sized.codes.astype(np.float32)) / 65535
    torch.testing.assert_close(values, reference, atol=2e-4, rtol=0)  # an 8-bit copy would be 2e-3 off
    assert len(np.unique(sized.codes[0])) > 60  # a smooth ramp, not 8-bit steps


def test_an_image_at_the_training_size_keeps_its_own_codes(tmp_path):
    codes = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(codes).save(tmp_path / "x.png")
    sized = decode_at_size(tmp_path / "x.png", 24)
    np.testing.assert_array_equal(sized.codes, codes.transpose(2, 0, 1))
    assert sized.scale == 255


@pytest.mark.parametrize(("w", "h", "at_least", "want"), [
    (4000, 3000, 256, 8), (4000, 3000, 512, 4), (4000, 3000, 1600, 1), (4002, 3000, 256, 2),
    (4001, 3000, 16, 1), (6000, 4000, 64, 8),
])
def test_scales_divide_both_sides_and_keep_the_size_asked_for(w, h, at_least, want):
    assert draft_scale(w, h, at_least) == want
    f = reduce_factor(w, h, at_least // OVERSAMPLE)
    assert w % f == 0 and h % f == 0 and min(w, h) // f >= at_least // OVERSAMPLE * OVERSAMPLE


def test_codes_index_like_the_float_tensor_they_hold():
    rng = np.random.default_rng(1)
    array = np.concatenate([rng.integers(0, 256, (3, 3, 5, 5)), rng.integers(0, 1024, (2, 3, 5, 5))])
    array = array.astype(np.uint16)
    scales = np.array([255, 255, 255, 1023, 1023], dtype=np.float32)
    full = torch.from_numpy(array.astype(np.float32)) / torch.from_numpy(scales).view(-1, 1, 1, 1)
    codes = Codes(array, scales)
    torch.testing.assert_close(codes.tensor(), full, atol=0, rtol=0)
    idx = torch.tensor([4, 0, 3, 0])
    torch.testing.assert_close(codes[idx], full[idx], atol=0, rtol=0)
    torch.testing.assert_close(codes[2], full[2], atol=0, rtol=0)
    torch.testing.assert_close(codes[:, 0], full[:, 0], atol=0, rtol=0)
    sub = codes.subset([4, 1])
    assert len(sub) == 2 and sub.shape == (2, 3, 5, 5)
    torch.testing.assert_close(sub[[1, 0]], full[[1, 4]], atol=0, rtol=0)
    torch.testing.assert_close(torch.stack(list(sub)), full[[4, 1]], atol=0, rtol=0)
