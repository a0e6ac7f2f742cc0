"""img2lut.pair_cache and img2lut.pair_loading: decoded pairs are reused only while their files are
unchanged, a damaged pack is rebuilt with one warning and never used, writes are atomic, depths are
kept, worker processes give what one process gives."""

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import img2lut.pair_loading as pair_loading
from img2lut import pair_cache
from img2lut.data import DataError, pair_files, read_rgb, resize
from img2lut.pair_loading import load_pairs
from lutkern.files import TEMP_SUFFIX
from lutkern.imageio import write_image

SIZE = 16


@pytest.fixture
def folders(tmp_path):
    ins, outs = tmp_path / "in", tmp_path / "out"
    ins.mkdir()
    outs.mkdir()
    rng = np.random.default_rng(0)
    for k in range(4):
        for folder in (ins, outs):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"p{k}.png")
    return ins, outs


@pytest.fixture
def decoded(monkeypatch):
    """The names of the pairs decoded (not taken from the cache), in order."""
    names = []
    real = pair_loading.decode_pair

    def counting(pair, size):
        names.append(pair.name)
        return real(pair, size)

    monkeypatch.setattr(pair_loading, "decode_pair", counting)
    return names


def _reference(pairs, side: str) -> torch.Tensor:
    return torch.stack([resize(read_rgb(getattr(p, side.removesuffix("s"))), SIZE) for p in pairs])


def _load(folders, cache, **kw):
    return load_pairs(pair_files(*folders), SIZE, cache=cache, **kw)


def test_a_second_run_reads_the_cache_and_gets_the_same_codes(folders, tmp_path, decoded):
    cache = tmp_path / "cache"
    first = _load(folders, cache)
    assert decoded == ["p0", "p1", "p2", "p3"]
    second = _load(folders, cache)
    assert decoded == ["p0", "p1", "p2", "p3"]  # nothing decoded again
    assert isinstance(second.inputs.array, np.memmap) and second.inputs.dtype == np.uint8
    for side in ("inputs", "targets"):
        torch.testing.assert_close(getattr(second, side).tensor(), getattr(first, side).tensor(),
                                   atol=0, rtol=0)
        ref = _reference(pair_files(*folders), side)
        torch.testing.assert_close(getattr(second, side).tensor(), ref, atol=0.5 / 255 + 1e-6, rtol=0)
    uncached = _load(folders, None)
    assert not isinstance(uncached.inputs.array, np.memmap)
    torch.testing.assert_close(uncached.targets.tensor(), first.targets.tensor(), atol=0, rtol=0)


@pytest.mark.parametrize("change", ["mtime", "size", "added", "removed"])
def test_only_changed_or_added_files_are_decoded_again(folders, tmp_path, decoded, change):
    ins, outs = folders
    cache = tmp_path / "cache"
    _load(folders, cache)
    decoded.clear()
    if change == "mtime":  # same size, new pixels, new modification time
        Image.fromarray(np.full((20, 24, 3), 7, np.uint8)).save(outs / "p2.png")
        os.utime(outs / "p2.png", ns=(1, 1))
    elif change == "size":
        Image.fromarray(np.full((20, 24, 3), 9, np.uint8)).save(ins / "p1.png", compress_level=0)
        st = (ins / "p0.png").stat()
        os.utime(ins / "p1.png", ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime as before: size tells
    elif change == "added":
        for folder in folders:
            Image.fromarray(np.full((20, 24, 3), 3, np.uint8)).save(folder / "p9.png")
    else:
        (ins / "p3.png").unlink()
        (outs / "p3.png").unlink()
    data = _load(folders, cache)
    assert decoded == {"mtime": ["p2"], "size": ["p1"], "added": ["p9"], "removed": []}[change]
    pairs = pair_files(*folders)
    for side in ("inputs", "targets"):
        torch.testing.assert_close(getattr(data, side).tensor(), _reference(pairs, side),
                                   atol=0.5 / 255 + 1e-6, rtol=0)


def test_other_decode_settings_use_their_own_pack(folders, tmp_path, decoded):
    cache = tmp_path / "cache"
    _load(folders, cache)
    data = load_pairs(pair_files(*folders), 8, cache=cache)
    assert len(decoded) == 8 and data.inputs.shape == (4, 3, 8, 8)
    assert len(list(cache.glob("*.json"))) == 2


def _pack(cache):
    (index,) = cache.glob("*.json")
    key = index.name.removesuffix(".json")
    return pair_cache.paths(cache, key)


def _flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": lambda p: p["inputs"].write_bytes(p["inputs"].read_bytes()[:-7]),
    "wrong header": lambda p: _flip_byte(p["targets"], 20),
    "bad checksum": lambda p: _flip_byte(p["inputs"], pair_cache.HEADER + 100),
    "index not JSON": lambda p: p["index"].write_text('{"format": 1, "pai'),
    "index of another pack": lambda p: p["index"].write_text(p["index"].read_text().replace('"row": 1',
                                                                                           '"row": 2')),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_pack_is_rebuilt_with_one_warning_never_used(folders, tmp_path, decoded, damage):
    cache = tmp_path / "cache"
    _load(folders, cache)
    DAMAGE[damage](_pack(cache))
    decoded.clear()
    with pytest.warns(UserWarning) as caught:
        data = _load(folders, cache)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert "pair cache" in str(caught[0].message) and str(cache) in str(caught[0].message)
    assert decoded == ["p0", "p1", "p2", "p3"]
    pairs = pair_files(*folders)
    torch.testing.assert_close(data.inputs.tensor(), _reference(pairs, "inputs"), atol=0.5 / 255 + 1e-6,
                               rtol=0)
    decoded.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _load(folders, cache)  # the rebuilt pack is whole
    assert decoded == []


def test_an_unreadable_file_is_one_line_naming_it_and_the_pack_stays(folders, tmp_path):
    ins, _ = folders
    cache = tmp_path / "cache"
    _load(folders, cache)
    before = {p.name: p.read_bytes() for p in cache.iterdir()}
    (ins / "p2.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError) as err:
        _load(folders, cache)
    assert str(ins / "p2.png") in str(err.value) and "\n" not in str(err.value)
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before  # no temporary, nothing replaced
    assert not list(cache.glob("*" + TEMP_SUFFIX))


def test_a_cache_in_the_inputs_folder_never_touches_an_input(folders, decoded):
    ins, outs = folders
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for folder in folders for p in folder.iterdir()}
    _load(folders, ins)
    _load(folders, ins)
    assert len(decoded) == 4
    assert [p.name for p in pair_files(ins, outs)] == ["p0", "p1", "p2", "p3"]
    assert all((p.read_bytes(), p.stat().st_mtime_ns) == kept for p, kept in before.items())


def test_16_bit_and_float_pairs_keep_their_depth(tmp_path):
    pytest.importorskip("av", reason="could not import av (PyAV)")
    from lutkern.exr_dpx import write_exr

    ins, outs = tmp_path / "in", tmp_path / "out"
    ins.mkdir()
    outs.mkdir()
    ramp = torch.linspace(0, 1, SIZE)
    deep = torch.stack([ramp.expand(SIZE, -1), ramp.flip(0).expand(SIZE, -1), ramp.expand(SIZE, -1) ** 3])
    write_image(ins / "a.png", deep, bit_depth=16)
    write_image(outs / "a.png", deep.flip(0), bit_depth=16)
    Image.new("RGB", (SIZE, SIZE), (10, 20, 30)).save(ins / "b.png")  # an 8-bit input among 16-bit ones
    write_image(outs / "b.png", torch.full((3, SIZE, SIZE), 0.25), bit_depth=16)
    hdr = deep * 4  # above 1: kept as stored
    write_exr(ins / "c.exr", hdr, precision="float")
    write_exr(outs / "c.exr", hdr.flip(0), precision="float")
    for cache in (None, tmp_path / "cache", tmp_path / "cache"):
        data = load_pairs(pair_files(ins, outs), SIZE, cache=cache)
        assert data.inputs.dtype == np.float32 and data.targets.dtype == np.float32
        torch.testing.assert_close(data.inputs[0], deep, atol=0.5 / 65535, rtol=0)  # not 8-bit steps
        flat = torch.tensor([10, 20, 30.0]).view(3, 1, 1).expand(3, SIZE, SIZE) / 255
        torch.testing.assert_close(data.inputs[1], flat, atol=0, rtol=0)
        torch.testing.assert_close(data.inputs[2], hdr, atol=0, rtol=0)
        torch.testing.assert_close(data.targets[0], deep.flip(0), atol=0.5 / 65535, rtol=0)


def test_a_region_widens_the_rows_already_written(tmp_path):
    path = tmp_path / "region"
    path.write_bytes(b"")
    region = pair_cache.Region(3, (2, 2), path, b"b" * 16)
    region.put(2, np.full((2, 2), 200, np.uint8))
    region.put(0, np.full((2, 2), 7, np.uint8))
    region.put(1, np.full((2, 2), 60000, np.uint16))
    array = region.finish()
    assert array.dtype == np.uint16
    np.testing.assert_array_equal(array[:, 0, 0], [7, 60000, 200])
    region.put(1, np.full((2, 2), 0.5, np.float32))
    np.testing.assert_array_equal(region.finish()[:, 1, 1], np.array([7, 0.5, 200], np.float32))
    assert path.stat().st_size == pair_cache.HEADER + 3 * 4 * 4


def test_worker_processes_give_what_one_process_gives(folders, monkeypatch):
    monkeypatch.setattr(pair_loading, "MIN_POOL_PAIRS", 1)
    pairs = pair_files(*folders)
    done = []
    pooled = load_pairs(pairs, SIZE, done.append, workers=2)
    alone = load_pairs(pairs, SIZE, workers=1)
    assert sorted(done) == [0, 1, 2, 3]
    for side in ("inputs", "targets"):
        torch.testing.assert_close(getattr(pooled, side).tensor(), getattr(alone, side).tensor(),
                                   atol=0, rtol=0)
    (folders[1] / "p3.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    with pytest.raises(DataError) as err:
        load_pairs(pairs, SIZE, workers=2)
    assert str(folders[1] / "p3.png") in str(err.value) and "\n" not in str(err.value)


def test_without_the_cache_a_set_larger_than_memory_is_refused_before_decoding(folders, monkeypatch, decoded):
    monkeypatch.setattr(pair_loading, "physical_memory", lambda: 1000)
    with pytest.raises(DataError, match=r"4 pairs at 16x16 need .* GiB .*drop --no-cache"):
        _load(folders, None)
    assert decoded == []
    assert len(_load(folders, folders[0].parent / "cache")) == 4  # memory-mapped: any size


def test_fit_and_coverage_on_codes_match_them_on_float_tensors(folders):
    from img2lut.fitting import fit_lut
    from img2lut.metrics import lattice_coverage

    data = _load(folders, None)
    xs, ys = data.inputs.tensor(), data.targets.tensor()
    on_codes = fit_lut(data.inputs, data.targets, lut_size=5, steps=20, batch_pixels=256)
    on_floats = fit_lut(xs, ys, lut_size=5, steps=20, batch_pixels=256)
    torch.testing.assert_close(on_codes.lut, on_floats.lut, atol=0, rtol=0)  # the same pixels drawn
    torch.testing.assert_close(on_codes.coverage, on_floats.coverage, atol=1e-4, rtol=1e-6)
    torch.testing.assert_close(lattice_coverage(data.inputs, 5), lattice_coverage(xs, 5), atol=1e-4,
                               rtol=1e-6)


def test_a_cache_folder_that_cannot_be_written_is_one_line(folders, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError) as err:
        _load(folders, blocker / "cache")
    assert str(blocker / "cache") in str(err.value) and "--no-cache" in str(err.value)
    assert "\n" not in str(err.value)
