"""What keeps a large training set within memory: the set is read as codes a batch at a time, never made
float whole (the diagnosis, the first stage's pixel pool, validation), and subsets of one array share it."""

import numpy as np
import pytest
import torch

import lutkern
from img2lut.codes import BATCH, Codes
from img2lut.diagnosis import diagnose, normalised
from img2lut.fitting import fit_lut, image_psnr
from img2lut.trainer import CorrectedCodes, batch_stats, joined


class CountingCodes(Codes):
    """Codes that record the most images made float in one read."""

    largest = 0

    def __getitem__(self, key):
        out = super().__getitem__(key)
        CountingCodes.largest = max(CountingCodes.largest, len(out) if out.dim() == 4 else 1)
        return out

    def subset(self, indices):
        return CountingCodes(self.array, self.scales, self.index[np.asarray(indices, dtype=np.int64)])


def _codes(count: int, size: int, seed: int, cls=Codes) -> Codes:
    """``count`` smooth random images as 8-bit codes."""
    gen = torch.Generator().manual_seed(seed)
    small = torch.rand(count, 3, 3, 3, generator=gen)
    images = torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    array = (images * 255).round().to(torch.uint8).numpy()
    return cls(array, np.full(count, 255, dtype=np.float32))


def test_the_diagnosis_reads_codes_a_batch_at_a_time_and_finds_what_the_tensors_give():
    n = BATCH + 5
    inputs = _codes(n, 8, 0, CountingCodes)
    targets = CountingCodes((inputs.array.astype(np.float32) * 0.8).round().astype(np.uint8), inputs.scales)
    CountingCodes.largest = 0
    found = diagnose(inputs, targets, normalise="stretch")
    assert 0 < CountingCodes.largest <= BATCH
    assert found == diagnose(inputs[:], targets[:], normalise="stretch")


def test_training_and_validation_subsets_are_joined_without_a_copy():
    codes = _codes(10, 4, 1)
    train, val = codes.subset([0, 2, 3, 7]), codes.subset([9, 1])
    both = joined(train, val)
    assert both.array is codes.array
    torch.testing.assert_close(both[:], torch.cat([train[:], val[:]]), atol=0, rtol=0)
    other = _codes(3, 4, 2)  # another folder's array: the codes are copied, still as codes
    mixed = joined(train, other)
    assert mixed.dtype == np.uint8
    torch.testing.assert_close(mixed[:], torch.cat([train[:], other[:]]), atol=0, rtol=0)


def test_corrected_codes_are_16_bit_codes_of_the_correction_and_fit_as_their_floats_do():
    inputs, targets = _codes(BATCH + 3, 6, 3), _codes(BATCH + 3, 6, 4)
    stats = batch_stats(inputs)
    fixed = CorrectedCodes(inputs, "stretch", stats)
    assert fixed.array is inputs.array  # computed as read, never held whole
    want = normalised(inputs[:], stats, "stretch")
    got = fixed[:]
    torch.testing.assert_close(got, want, atol=0.5 / 65535 + 1e-7, rtol=0)
    assert torch.equal((got * 65535).round() / 65535, got)  # 16-bit codes
    part = fixed.subset([5, 0, 66])
    torch.testing.assert_close(part[:], got[[5, 0, 66]], atol=0, rtol=0)
    flat = torch.tensor([0, 35, 36 * 66 + 7, 36 * 5 + 30])  # pixels of images 0, 0, 66 and 5
    torch.testing.assert_close(fixed.pixels(flat), got.flatten(2)[[0, 0, 66, 5], :, [0, 35, 7, 30]].T,
                               atol=0, rtol=0)
    kwargs = dict(lut_size=5, steps=3, batch_pixels=256)
    as_codes, as_floats = fit_lut(fixed, targets, **kwargs), fit_lut(fixed[:], targets[:], **kwargs)
    torch.testing.assert_close(as_codes.lut, as_floats.lut, atol=0, rtol=0)


@pytest.mark.parametrize("keep", [None, 3])
def test_validation_keeps_the_outputs_asked_for_and_measures_ssim_per_image(keep):
    from img2lut.data import PairedImages
    from img2lut.evaluation import evaluate_model
    from img2lut.metrics import ssim_value
    from img2lut.model import ResNetLUTGenerator

    inputs, targets = _codes(7, 16, 5), _codes(7, 16, 6)
    pairs = PairedImages([f"p{i}" for i in range(7)], inputs, targets)
    torch.manual_seed(0)
    model = ResNetLUTGenerator(lut_size=5)
    whole = evaluate_model(model, pairs, inputs[:], 2, torch.device("cpu"))
    part = evaluate_model(model, pairs, inputs[:], 2, torch.device("cpu"), keep_outputs=keep, ssim=True)
    assert len(part.outputs) == (7 if keep is None else keep)
    torch.testing.assert_close(part.outputs, whole.outputs[:len(part.outputs)], atol=0, rtol=0)
    torch.testing.assert_close(part.image_mse, whole.image_mse, atol=0, rtol=0)
    each = torch.tensor([ssim_value(whole.outputs[i:i + 1], targets[i:i + 1]) for i in range(7)])
    torch.testing.assert_close(part.image_ssim, each, atol=1e-6, rtol=0)
    assert abs(float(part.image_ssim.mean()) - ssim_value(whole.outputs, targets[:])) < 1e-5


def test_the_psnr_of_each_pair_reads_codes_one_image_at_a_time():
    inputs, targets = _codes(9, 8, 7, CountingCodes), _codes(9, 8, 8, CountingCodes)
    lut = 0.9 * lutkern.identity_lut(5)
    CountingCodes.largest = 0
    got = image_psnr(inputs, targets, lut)
    assert CountingCodes.largest == 1
    torch.testing.assert_close(got, image_psnr(inputs[:], targets[:], lut), atol=0, rtol=0)
