"""img2lut.demo: the built-in pairs, on a tiny variant of the builder."""

import json

import pytest
import torch

import lutkern
from img2lut.data import DataError, pair_files
from img2lut.demo import SYNTHETIC_KINDS, DemoSpec, ensure_demo, synthetic_image
from img2lut.metrics import COVERED_WEIGHT, lattice_coverage
from img2lut.pair_loading import load_pairs

TINY = DemoSpec(image_size=16, crops_per_photo=1, val_crops_per_photo=2, synthetic=4, val_synthetic=2,
                lut_size=5)


pytestmark = pytest.mark.usefixtures("fast_small_tensors")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LUTKERN_BACKEND", "torch")
        return ensure_demo(tmp_path_factory.mktemp("cache") / "demo", TINY)


def test_layout_and_counts(demo):
    train = pair_files(demo.inputs, demo.targets)
    val = pair_files(demo.val_inputs, demo.val_targets)
    assert len(train) == 4 * TINY.crops_per_photo + TINY.synthetic
    assert len(val) == TINY.val_crops_per_photo + TINY.val_synthetic
    # Validation photos are a source photo training never saw.
    train_sources = {p.name.split("-")[0] for p in train}
    val_sources = {p.name.split("-")[1] for p in val}
    assert "coffee" in val_sources and "coffee" not in train_sources
    info = json.loads((demo.root / "demo.json").read_text())
    assert info["spec"]["lut_size"] == 5


def test_targets_are_the_true_lut_applied_to_the_inputs(demo):
    truth = lutkern.read_cube(demo.truth).lut3d
    torch.testing.assert_close(truth, lutkern.looks["bw"](size=5), atol=1e-6, rtol=0)
    for ins, outs in ((demo.inputs, demo.targets), (demo.val_inputs, demo.val_targets)):
        pairs = load_pairs(pair_files(ins, outs), image_size=TINY.image_size)
        graded = lutkern.apply_lut(pairs.inputs.tensor(), truth)
        # Targets are stored as 8-bit PNG: rounding is the only difference.
        torch.testing.assert_close(pairs.targets.tensor(), graded, atol=0.5 / 255 + 1e-6, rtol=0)
        # Black and white: the three channels are equal.
        torch.testing.assert_close(pairs.targets[:, 0], pairs.targets[:, 2], atol=0, rtol=0)


def test_build_is_deterministic(demo, tmp_path):
    again = ensure_demo(tmp_path / "again", TINY)
    for folder in ("inputs", "targets", "val-inputs", "val-targets"):
        first = sorted((demo.root / folder).iterdir())
        second = sorted((again.root / folder).iterdir())
        assert [p.name for p in first] == [p.name for p in second]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second, strict=True))


def test_existing_demo_is_reused_and_foreign_folders_refused(demo, tmp_path):
    assert ensure_demo(demo.root, TINY) == demo
    with pytest.raises(DataError, match="other settings"):
        ensure_demo(demo.root, DemoSpec(image_size=16, crops_per_photo=2, lut_size=5))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    with pytest.raises(DataError, match="not a complete demo"):
        ensure_demo(foreign, TINY)


def test_synthetic_images_cover_the_colour_cube():
    gen = torch.Generator().manual_seed(0)
    for kind in SYNTHETIC_KINDS:
        image = synthetic_image(kind, 30, gen)
        assert image.shape == (3, 30, 30) and image.min() >= 0 and image.max() <= 1
    # Ten noise images of 64x64 hold 2560 uniform random colours in blocks of 16 pixels. A corner point of
    # a 5^3 lattice takes weight only from its one cell (1/64 of the cube), on average 1/8 per pixel there:
    # about 80 pixels' worth; it stays under one pixel's only if almost no colour falls in that cell.
    images = torch.stack([synthetic_image("noise", 64, gen) for _ in range(10)])
    assert (lattice_coverage(images, 5) >= COVERED_WEIGHT).all()


def test_default_folder_honours_the_environment(monkeypatch, tmp_path):
    from img2lut.demo import DEMO_VERSION, default_demo_dir

    monkeypatch.delenv("IMG2LUT_DEMO_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_demo_dir() == tmp_path / "img2lut" / f"bw-{DEMO_VERSION}"
    monkeypatch.setenv("IMG2LUT_DEMO_DIR", str(tmp_path / "x"))
    assert default_demo_dir() == tmp_path / "x" / f"bw-{DEMO_VERSION}"
    assert default_demo_dir("adaptive") == tmp_path / "x" / f"adaptive-{DEMO_VERSION}"


def test_adaptive_demo_has_one_true_lut_per_pair(tmp_path):
    spec = DemoSpec(image_size=16, crops_per_photo=2, val_crops_per_photo=2, synthetic=0, val_synthetic=0,
                    lut_size=5, grade="grey_world", train_photos=("astronaut", "chelsea"),
                    val_photos=("coffee",))
    demo = ensure_demo(tmp_path / "adaptive", spec)
    assert not demo.truth.exists()
    grades = json.loads(demo.grades.read_text())
    for ins, outs in ((demo.inputs, demo.targets), (demo.val_inputs, demo.val_targets)):
        pairs = load_pairs(pair_files(ins, outs), image_size=16)
        assert set(pairs.names) <= set(grades)
        truths = demo.true_luts(pairs.names, 5)
        assert truths.shape == (len(pairs), 5, 5, 5, 3)
        graded = lutkern.apply_lut(pairs.inputs.tensor(), truths)
        torch.testing.assert_close(pairs.targets.tensor(), graded, atol=0.5 / 255 + 1e-6, rtol=0)
    # No single LUT: the pairs' grades differ (gains, as white points, and strengths follow each input).
    assert len({tuple(g["hi"]) for g in grades.values()}) == len(grades)
    assert len({g["strength"] for g in grades.values()}) > 1


def test_adaptive_inputs_carry_their_own_exposure_and_white_balance_error(tmp_path, monkeypatch):
    """Every photo is mis-shot before it is graded: a flat grey photo comes out at a different exposure and
    colour in every pair, within the drawn ranges (in linear light, before 8-bit rounding)."""
    from img2lut import demo as demo_module
    from img2lut.grades import EXPOSURE_STOPS, HAZE, WB_LOG2_GAIN

    monkeypatch.setattr(demo_module, "load_photo", lambda name: torch.full((3, 64, 64), 0.5))
    spec = DemoSpec(image_size=8, crops_per_photo=24, val_crops_per_photo=1, synthetic=0, val_synthetic=0,
                    lut_size=3, grade="levels", train_photos=("astronaut",), val_photos=("coffee",))
    demo = ensure_demo(tmp_path / "flat", spec)
    inputs = load_pairs(pair_files(demo.inputs, demo.targets), image_size=8).inputs.tensor()
    assert (inputs.amax((2, 3)) - inputs.amin((2, 3))).max() == 0  # each still flat
    colours = inputs[:, :, 0, 0].double()
    # Undo the haze bounds: the green value lies between the darkest and brightest exposure of grey 0.5.
    darkest = (0.5**2.2 * 2 ** EXPOSURE_STOPS[0]) ** (1 / 2.2)
    brightest = HAZE[1] + (1 - HAZE[1]) * min(1.0, (0.5**2.2 * 2 ** EXPOSURE_STOPS[1]) ** (1 / 2.2))
    green = colours[:, 1]
    assert (green >= darkest - 1 / 255).all() and (green <= brightest + 1 / 255).all()
    assert green.max() - green.min() > 0.2  # exposures spread over most of the range
    casts = (colours[:, 0] / colours[:, 1]).log2()  # white balance: red against green, both hazed
    assert casts.max() - casts.min() > 0.2 and casts.abs().max() < WB_LOG2_GAIN[1] + 0.05
