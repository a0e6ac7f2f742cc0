"""img2lut.pack_results: what is computed from a pack's codes (statistics, thumbnails, the diagnosis, the
first stage's LUT) is read back by later runs only while the pack and the settings are those it was
computed from; a damaged result is computed again with one warning, never used."""

import dataclasses
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

import img2lut.trainer as trainer
from img2lut import pack_results
from img2lut.config import TrainConfig
from img2lut.data import PairedImages, pair_files
from img2lut.evaluation import evaluate_model
from img2lut.model import ResNetLUTGenerator
from img2lut.pair_cache import RESULT_SUFFIX
from img2lut.pair_loading import load_pairs
from img2lut.training_data import Data, thumbnails

SIZE = 16


@pytest.fixture
def folders(tmp_path):
    ins, outs = tmp_path / "in", tmp_path / "out"
    ins.mkdir()
    outs.mkdir()
    rng = np.random.default_rng(0)
    for k in range(6):
        image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
        Image.fromarray(image).save(ins / f"p{k}.png")
        Image.fromarray((image * 0.7 + 20).astype(np.uint8)).save(outs / f"p{k}.png")
    return ins, outs


def _load(folders, cache):
    return load_pairs(pair_files(*folders), SIZE, cache=cache)


def _results(cache):
    return sorted(p.name for p in cache.glob(f"*{RESULT_SUFFIX}"))


class Counter:
    """A compute function that counts the images it was asked for."""

    def __init__(self, fn):
        self.fn, self.images = fn, 0

    def __call__(self, codes):
        self.images += len(codes)
        return self.fn(codes)


def _stats(codes):
    return torch.cat([trainer.image_stats(b) for b in codes.batches()])


def test_per_image_results_are_computed_once_per_row_and_read_back_the_same(folders, tmp_path):
    cache = tmp_path / "cache"
    pairs = _load(folders, cache)
    train, val = pairs.inputs.subset([4, 0, 2]), pairs.inputs.subset([1, 3, 5, 0])
    count = Counter(_stats)
    first = pack_results.per_image(train, "stats", {}, count)
    assert count.images == 3
    torch.testing.assert_close(first, _stats(train), atol=0, rtol=0)
    both = pack_results.per_image(val, "stats", {}, count)  # only the rows not kept yet: 1, 3, 5
    assert count.images == 6
    torch.testing.assert_close(both, _stats(val), atol=0, rtol=0)
    again = _load(folders, cache).inputs  # a later run
    torch.testing.assert_close(pack_results.per_image(again, "stats", {}, count), _stats(again), atol=0,
                               rtol=0)
    assert count.images == 6
    pack_results.per_image(again, "stats", {"other": 1}, count)  # other settings: computed
    assert count.images == 12


def test_a_changed_file_makes_every_kept_result_of_its_pack_stale(folders, tmp_path):
    cache = tmp_path / "cache"
    pairs = _load(folders, cache)
    count = Counter(_stats)
    pack_results.per_image(pairs.inputs, "stats", {}, count)
    thumbs = thumbnails(pairs.inputs, 8)
    assert len(_results(cache)) == 2
    stale = {p.name.split("-")[0]: p.read_bytes() for p in cache.glob(f"*{RESULT_SUFFIX}")}
    path = folders[0] / "p2.png"
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(path)
    os.utime(path, ns=(1, 1))
    changed = _load(folders, cache)
    assert _results(cache) == []  # the rewritten pack removed them
    got = pack_results.per_image(changed.inputs, "stats", {}, count)
    assert count.images == 12
    (path,) = cache.glob(f"*stats*{RESULT_SUFFIX}")
    path.write_bytes(stale[path.name.split("-")[0]])  # the old pack's result under the new one's name
    again = pack_results.per_image(changed.inputs, "stats", {}, count)
    torch.testing.assert_close(again, got, atol=0, rtol=0)
    assert count.images == 18  # its header names the old build: computed again
    torch.testing.assert_close(got, _stats(changed.inputs), atol=0, rtol=0)
    assert float(got[2, -6]) == 0  # the black image's saturation
    new = thumbnails(changed.inputs, 8)
    assert float(new[2].abs().max()) == 0 and torch.equal(new[[0, 1, 3]], thumbs[[0, 1, 3]])


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend", "header", "empty"])
def test_a_damaged_result_is_computed_again_with_one_warning(folders, tmp_path, damage):
    cache = tmp_path / "cache"
    codes = _load(folders, cache).inputs
    count = Counter(_stats)
    want = pack_results.per_image(codes, "stats", {}, count)
    (path,) = cache.glob(f"*{RESULT_SUFFIX}")
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-5] ^= 0x40
    elif damage == "truncate":
        data = data[:-3]
    elif damage == "extend":
        data += b"\0"
    elif damage == "header":
        data[30] ^= 0xff
    else:
        data = b""
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="damaged") as caught:
        got = pack_results.per_image(codes, "stats", {}, count)
    assert len(caught) == 1 and str(path) in str(caught[0].message)
    assert count.images == 12  # computed again, not read
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pack_results.per_image(codes, "stats", {}, count)  # rewritten whole
    assert count.images == 12


def test_codes_from_no_pack_are_computed_every_time(folders):
    codes = load_pairs(pair_files(*folders), SIZE, cache=None).inputs
    count = Counter(_stats)
    pack_results.per_image(codes, "stats", {}, count)
    pack_results.per_image(codes, "stats", {}, count)
    assert count.images == 12


def _data(pairs: PairedImages) -> Data:
    train, val = pairs.subset([0, 1, 2, 3]), pairs.subset([4, 5])
    return Data(train, val, thumbnails(train.inputs, 8), thumbnails(val.inputs, 8), "test", None, None, "")


@pytest.mark.parametrize("normalise", ["auto", "stretch"])
def test_the_diagnosis_and_the_first_stage_are_kept_per_pack_rows_and_settings(folders, tmp_path,
                                                                               monkeypatch, normalise):
    calls = {"diagnose": 0, "fit_lut": 0}
    for name in calls:
        real = getattr(trainer, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(trainer, name, counted)
    cache = tmp_path / "cache"
    config = TrainConfig(lut_size=5, normalise=normalise, device="cpu")
    console = Console(quiet=True)

    def first_stage(pairs):
        resolved, diagnosis = trainer.resolve_recipe(config, _data(pairs), console)
        return resolved, diagnosis, trainer.start_lut(resolved, _data(pairs), console)

    without = first_stage(load_pairs(pair_files(*folders), SIZE, cache=None))
    first = first_stage(_load(folders, cache))
    assert calls == {"diagnose": 2, "fit_lut": 2}
    again = first_stage(_load(folders, cache))
    assert calls == {"diagnose": 2, "fit_lut": 2}  # read back
    for got in (first, again):
        assert got[:2] == without[:2]
        torch.testing.assert_close(got[2], without[2], atol=0, rtol=0)
    resolved, pairs = again[0], _load(folders, cache)
    trainer.fit_corrected(dataclasses.replace(resolved, seed=1), pairs.inputs.subset([0, 1, 2, 3]),
                          pairs.targets.subset([0, 1, 2, 3]), console)
    assert calls["fit_lut"] == 3  # another seed: fitted anew
    trainer.fit_corrected(resolved, pairs.inputs.subset([0, 1, 2]), pairs.targets.subset([0, 1, 2]), console)
    assert calls["fit_lut"] == 4  # other rows of the same pack: fitted anew


def test_validation_with_the_kept_statistics_is_validation_without_them(folders, tmp_path):
    pairs = _load(folders, tmp_path / "cache")
    torch.manual_seed(0)
    model = ResNetLUTGenerator(lut_size=5)
    thumbs = thumbnails(pairs.inputs, 8)
    stats = trainer.batch_stats(pairs.inputs.subset([3, 1, 0, 2, 5, 4])).index_select(
        0, torch.tensor([2, 1, 3, 0, 5, 4]))  # computed in another order, read back in this one
    plain = evaluate_model(model, pairs, thumbs, 4, torch.device("cpu"))
    given = evaluate_model(model, pairs, thumbs, 4, torch.device("cpu"), stats=stats)
    torch.testing.assert_close(given.image_mse, plain.image_mse, atol=0, rtol=0)
    torch.testing.assert_close(given.outputs, plain.outputs, atol=0, rtol=0)
