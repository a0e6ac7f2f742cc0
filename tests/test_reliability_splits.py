"""Validation that does not leak, through each command's own code path: whole photographs held out
(several crops per photo, few photos), a --group-by that matches nothing, validation folders that are the
training folders or hold copies of training pairs, --inputs equal to --targets (train, fit, evaluate)."""

import shutil
import warnings

import pytest
import torch

import img2lut.fit as fit
import img2lut.train as train
import lutkern
from img2lut import checkpoint, evaluate
from img2lut.data import DataError, group_names, split_groups
from img2lut.model import ResNetLUTGenerator

pytestmark = pytest.mark.usefixtures("fast_small_tensors")
CROPS = [f"{photo}-{k:03d}" for photo in ("beach", "city") for k in (1, 2, 3)]  # 2 photos x 3 crops


def _photo(name: str) -> str:
    return name.rsplit("-", 1)[0]


@pytest.fixture(scope="module")
def crops(tmp_path_factory, write_patch_pairs):
    """``root/inputs`` + ``root/targets``: 2 photographs x 3 crops; ``root/val``: one pair of another
    photo and, in ``root/copied``, the same plus a renamed copy of a training pair."""
    root = tmp_path_factory.mktemp("crops")
    look = lutkern.looks["bw"](5)
    write_patch_pairs(root, CROPS, look, torch.Generator().manual_seed(0))
    write_patch_pairs(root, ["lake-001"], look, torch.Generator().manual_seed(1), inputs="val/in",
                      targets="val/tg")
    shutil.copytree(root / "val", root / "copied")
    for folder, into in (("inputs", "in"), ("targets", "tg")):
        shutil.copy(root / folder / "city-002.png", root / "copied" / into / "renamed.png")
    return root


def test_default_grouping_finds_two_photographs_of_three_crops():
    grouping = group_names(CROPS)
    assert grouping.groups == [_photo(n) for n in CROPS] and grouping.count == 2
    train_idx, val_idx = split_groups(grouping.groups, 0.1)
    held = {_photo(CROPS[i]) for i in val_idx}
    assert len(held) == 1 and not held & {_photo(CROPS[i]) for i in train_idx}


def test_a_pattern_that_matches_nothing_is_an_error_and_a_partial_one_warns():
    with pytest.raises(DataError, match="matches none of the 6 pair names"):
        group_names(CROPS, r"^shot(\d+)")
    with pytest.warns(UserWarning, match="does not match 3 of the 6"):
        grouping = group_names(CROPS, r"^(beach)")
    assert grouping.groups == ["beach"] * 3 + CROPS[3:]


def test_one_photograph_only_is_said_not_silent():
    names = [f"beach-{k}" for k in range(4)]
    with pytest.warns(UserWarning, match="crops of one photograph 'beach'"):
        assert group_names(names).groups == names


def test_camera_numbering_next_to_crops():
    names = ["IMG_0001", "IMG_0002", "beach-1", "beach-2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert group_names(names).groups == ["IMG_0001", "IMG_0002", "beach", "beach"]


def _train(crops, tmp_path, monkeypatch, *extra):
    """Run python -m img2lut.train up to the training itself; returns (status, the data it would train
    on)."""
    seen = []

    class Recorded:
        def __init__(self, config, data, *args):
            seen.append(data)

        def run(self):
            return 0

    monkeypatch.setattr(train, "Trainer", Recorded)
    status = train.main(["--inputs", str(crops / "inputs"), "--targets", str(crops / "targets"), "--out",
                         str(tmp_path), "--image-size", "16", "--cnn-size", "16", "--lut-size", "5",
                         "--epochs", "1", "--device", "cpu", *extra])
    return status, seen[0] if seen else None


def _sides(train_names, val_names):
    return {_photo(n) for n in train_names}, {_photo(n) for n in val_names}


def test_train_holds_out_whole_photographs(crops, tmp_path, monkeypatch):
    status, data = _train(crops, tmp_path, monkeypatch, "--val-fraction", "0.1")
    assert status == 0
    kept, held = _sides(data.train.names, data.val.names)
    assert len(held) == 1 and not kept & held and len(data.val) == 3
    assert "1 of 2 photographs held out whole" in data.grouping


def test_fit_holds_out_whole_photographs(crops, tmp_path, monkeypatch):
    reported = {}
    real = fit._report

    def record(name, images, psnr):
        reported[name] = list(images.names)
        return real(name, images, psnr)

    monkeypatch.setattr(fit, "_report", record)
    status = fit.main(["--inputs", str(crops / "inputs"), "--targets", str(crops / "targets"), "--out",
                       str(tmp_path / "fit.cube"), "--image-size", "16", "--lut-size", "3", "--steps", "2",
                       "--batch-pixels", "64", "--val-fraction", "0.1"])
    assert status == 0
    kept, held = _sides(reported["train"], reported["validation"])
    assert len(held) == 1 and not kept & held and len(reported["validation"]) == 3


def _fit(crops, tmp_path, *flags):
    return fit.main(["--out", str(tmp_path / "fit.cube"), "--image-size", "16", "--lut-size", "3",
                     "--steps", "2", "--batch-pixels", "64", *flags])


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("same-folders", "same folder"),
        ("val-is-train", "is the training --inputs folder"),
        ("val-has-a-copy", "1 of the 2 validation originals"),
        ("no-match", "matches none of the 6"),
    ],
)
def test_leaking_validation_is_refused_by_train_and_fit(crops, tmp_path, monkeypatch, capsys, case, match):
    ins, tgs = str(crops / "inputs"), str(crops / "targets")
    flags = {
        "same-folders": ["--inputs", ins, "--targets", ins],
        "val-is-train": ["--inputs", ins, "--targets", tgs, "--val-inputs", ins, "--val-targets", tgs],
        "val-has-a-copy": ["--inputs", ins, "--targets", tgs, "--val-inputs", str(crops / "copied" / "in"),
                           "--val-targets", str(crops / "copied" / "tg")],
        "no-match": ["--inputs", ins, "--targets", tgs, "--group-by", r"^shot(\d+)"],
    }[case]
    assert _fit(crops, tmp_path, *flags) == 2
    assert not (tmp_path / "fit.cube").exists()
    monkeypatch.setattr(train, "Trainer", None)  # never reached
    argv = [*flags, "--out", str(tmp_path), "--image-size", "16", "--cnn-size", "16", "--lut-size", "5",
            "--device", "cpu"]
    assert train.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(match in line and ": error: " in line for line in lines), lines


def test_validation_folders_of_other_photos_are_taken(crops, tmp_path, monkeypatch):
    status, data = _train(crops, tmp_path, monkeypatch, "--val-inputs", str(crops / "val" / "in"),
                          "--val-targets", str(crops / "val" / "tg"))
    assert status == 0 and data.val.names == ["lake-001"] and len(data.train) == 6


def test_evaluate_refuses_inputs_equal_to_targets(crops, tmp_path, capsys):
    model = ResNetLUTGenerator(5, "trilinear", "identity").eval()
    checkpoint.save_checkpoint(tmp_path / "model.pt", model=model, config={"image_size": 16, "cnn_size": 16})
    status = evaluate.main([str(tmp_path / "model.pt"), "--inputs", str(crops / "inputs"), "--targets",
                            str(crops / "inputs"), "--device", "cpu"])
    assert status == 2 and "same folder" in capsys.readouterr().err
