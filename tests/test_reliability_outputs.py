"""Every command that writes files refuses to write over its inputs (even with --overwrite), over its
checkpoint, or over any existing file without --overwrite: one line, exit status 2, nothing changed."""

import os
import subprocess
import sys

import pytest
import torch

import lutkern
import lutkern.files
from img2lut import checkpoint, evaluate, fit, predict, train
from img2lut.model import ResNetLUTGenerator
from lutkern import apply
from lutkern.files import check_output

pytestmark = pytest.mark.usefixtures("fast_small_tensors")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, write_patch_pairs):
    """Pairs in ``root/in`` + ``root/tg`` and a tiny model checkpoint ``root/model.pt``."""
    root = tmp_path_factory.mktemp("outputs")
    write_patch_pairs(
        root,
        ["p00", "p01", "p02"],
        lutkern.looks["bw"](5),
        torch.Generator().manual_seed(0),
        inputs="in",
        targets="tg",
    )
    torch.manual_seed(0)
    model = ResNetLUTGenerator(5, "trilinear", "identity").eval()
    checkpoint.save_checkpoint(root / "model.pt", model=model, config={"image_size": 16, "cnn_size": 16})
    (root / "luts").mkdir()
    (root / "photos").mkdir()
    lutkern.write_hald(root / "luts" / "hald.png", lutkern.identity_lut(4))
    (root / "runs" / "models" / "e").mkdir(parents=True)
    lutkern.write_cube(root / "runs" / "models" / "e" / "lut.cube", lutkern.identity_lut(2))
    (root / "runs" / "models" / "f").mkdir()
    lutkern.write_cube(root / "runs" / "models" / "f" / "model.pt", lutkern.identity_lut(2))  # a LUT
    lutkern.imageio.write_image(root / "photos" / "hald.png", torch.rand(3, 6, 8))  # a photo of that name
    (root / "models").mkdir()
    (root / "models" / "p01.cube").write_bytes((root / "model.pt").read_bytes())  # a checkpoint, oddly named
    (root / "linked").mkdir()
    (root / "linked" / "p02.png").symlink_to(root / "tg" / "p02.png")
    return root


def _snapshot(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _evaluate(root, *extra):
    return evaluate.main(
        [
            str(root / "model.pt"),
            "--inputs",
            str(root / "in"),
            "--targets",
            str(root / "tg"),
            "--device",
            "cpu",
            *extra,
        ]
    )


def _fit(root, out, *extra):
    return fit.main(
        [
            "--inputs",
            str(root / "in"),
            "--targets",
            str(root / "tg"),
            "--out",
            str(out),
            "--image-size",
            "16",
            "--lut-size",
            "3",
            "--steps",
            "2",
            "--batch-pixels",
            "64",
            "--val-fraction",
            "0",
            *extra,
        ]
    )


def _predict(root, checkpoint_path, image, out):
    return predict.main(
        [str(checkpoint_path), str(image), "--out", str(out), "--device", "cpu", "--overwrite"]
    )


REFUSED = {  # name -> the command, run on the set-up root
    "predict into the folder of its photo": (
        lambda r: _predict(r, r / "model.pt", r / "in/p00.png", r / "in")
    ),
    "predict its .cube onto the checkpoint": (
        lambda r: _predict(r, r / "models/p01.cube", r / "in/p01.png", r / "models")
    ),
    "predict through a symlink to its photo": (
        lambda r: _predict(r, r / "model.pt", r / "tg/p02.png", r / "linked")
    ),
    "evaluate --json onto the checkpoint": (
        lambda r: _evaluate(r, "--json", str(r / "model.pt"), "--overwrite")
    ),
    "evaluate --grid onto an input photo": (
        lambda r: _evaluate(r, "--grid", str(r / "in/p00.png"), "--overwrite")
    ),
    "evaluate --json onto a target": (lambda r: _evaluate(r, "--json", str(r / "tg/p01.png"), "--overwrite")),
    "evaluate --json and --grid the same file": (
        lambda r: _evaluate(r, "--json", str(r / "x.png"), "--grid", str(r / "x.png"))
    ),
    "fit --out onto an input photo": (lambda r: _fit(r, r / "in/p00.png", "--overwrite")),
    "fit --preview onto a target": (
        lambda r: _fit(r, r / "new.cube", "--preview", str(r / "tg/p00.png"), "--overwrite")
    ),
    "fit --out onto an existing file": (lambda r: _fit(r, r / "model.pt")),
    "fit --out and --preview the same file": (lambda r: _fit(r, r / "x.png", "--preview", str(r / "x.png"))),
    "apply onto its Hald LUT": (
        lambda r: apply.main(
            [
                "--lut",
                str(r / "luts/hald.png"),
                str(r / "photos/hald.png"),
                "--out",
                str(r / "luts"),
                "--overwrite",
            ]
        )
    ),
    "train --true-lut that is the run's own lut.cube": (
        lambda r: train.main(
            [
                "--inputs",
                str(r / "in"),
                "--targets",
                str(r / "tg"),
                "--out",
                str(r / "runs"),
                "--experiment",
                "e",
                "--true-lut",
                str(r / "runs/models/e/lut.cube"),
            ]
        )
    ),
    "train with its photos inside the run folder": (
        lambda r: train.main(["--inputs", str(r / "runs/models/e"), "--targets", str(r / "tg"),
                              "--out", str(r / "runs"), "--experiment", "e"])
    ),
    "train --true-lut that is a file the run would write": (
        lambda r: train.main(["--inputs", str(r / "in"), "--targets", str(r / "tg"), "--out", str(r / "runs"),
                              "--experiment", "f", "--true-lut", str(r / "runs/models/f/model.pt")])
    ),
    "train --experiment outside <out>/models": (
        lambda r: train.main(["--inputs", str(r / "in"), "--targets", str(r / "tg"), "--out", str(r / "runs"),
                              "--experiment", "../../escape"])
    ),
    "train where another run left its files": (
        lambda r: train.main(["--inputs", str(r / "in"), "--targets", str(r / "tg"), "--out", str(r / "runs"),
                              "--experiment", "e"])
    ),
    "train --resume into another run's folder": (
        lambda r: train.main(
            ["--resume", str(r / "model.pt"), "--out", str(r / "elsewhere"), "--experiment", "x"]
        )
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_with_one_line_and_nothing_changes(setup, case, capsys):
    before = _snapshot(setup)
    code = REFUSED[case](setup)
    err = capsys.readouterr().err
    assert _snapshot(setup) == before, "a file was written or changed"
    assert code in (1, 2) and "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    if case.startswith(("apply", "predict")):  # a per-file refusal in a batch: status 1, the batch goes on
        assert code == 1 and "refusing to overwrite an input" in errors[0]
    else:
        assert code == 2


def test_existing_outputs_are_replaced_only_with_overwrite(setup, tmp_path, capsys):
    for name, run in (
        ("r.json", lambda p, *o: _evaluate(setup, "--json", str(p), *o)),
        ("g.png", lambda p, *o: _evaluate(setup, "--grid", str(p), *o)),
        ("f.cube", lambda p, *o: _fit(setup, p, *o)),
    ):
        path = tmp_path / name
        path.write_text("mine")
        assert run(path) == 2 and path.read_text() == "mine"
        assert "--overwrite" in capsys.readouterr().err
        assert run(path, "--overwrite") == 0 and path.read_bytes() != b"mine"


def test_the_guard_follows_links_and_refuses_folders(tmp_path):
    src = tmp_path / "photo.png"
    src.write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(src)
    (tmp_path / "hard.png").hardlink_to(src)
    for alias in ("link.png", "hard.png", "./photo.png"):
        with pytest.raises(ValueError, match="refusing to overwrite an input"):
            check_output(tmp_path / alias, [src], overwrite=True)
    with pytest.raises(ValueError, match="is a folder"):
        check_output(tmp_path, [], overwrite=True)
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="exists"):
        check_output(tmp_path / "dangling.png")
    assert check_output(tmp_path / "new.png", [src]) == tmp_path / "new.png"


@pytest.mark.parametrize("failing", ["write_codes", "_write_text"])
def test_predict_writes_the_image_and_its_cube_or_neither(setup, tmp_path, monkeypatch, failing):
    import img2lut.predict as predict

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    argv = [str(setup / "model.pt"), str(setup / "in" / "p00.png"), "--out", str(tmp_path), "--device", "cpu"]
    with monkeypatch.context() as patch:
        patch.setattr(predict, failing, disk_full)
        assert predict.main(argv) == 1
    assert list(tmp_path.iterdir()) == []
    assert predict.main(argv) == 0  # the rerun needs no --overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p00.cube", "p00.png"]


def _temporary_of(folder, name, pid, host=None):
    """A temporary named as process ``pid`` of machine ``host`` (default: this one) names its own."""
    return folder / f".{name}.{pid}.{host or lutkern.files._HOST}.k2j4h1x9{lutkern.files.TEMP_SUFFIX}"


def _ended_process() -> int:
    """The id of a process that has ended (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    return int(done.stdout)


def test_a_write_removes_only_the_temporaries_of_ended_processes(tmp_path):
    """A run that has written nothing for a while is still running: its temporary stays, however old;
    one left by a process that has ended (a killed run) goes, as does its staging folder."""
    quiet = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ended = _ended_process()
        working = _temporary_of(tmp_path, "lut.cube", quiet.pid)
        stale = _temporary_of(tmp_path, "checkpoint.pt", ended)
        staging = tmp_path / f".staging.{ended}.{lutkern.files._HOST}.a8d7f6e5{lutkern.files.TEMP_SUFFIX}"
        elsewhere = _temporary_of(tmp_path, "lut.cube", ended, host="0abcde")  # another machine's (NFS)
        foreign = tmp_path / ".notes.txt.tmp"  # someone else's
        staging.mkdir()
        (staging / "clip.mp4").write_bytes(b"partial")
        for path in (working, stale, elsewhere, foreign):
            path.write_bytes(b"partial")
            os.utime(path, (0, 0))  # long quiet: age says nothing of whether its writer still runs
        lutkern.write_cube(tmp_path / "new.cube", lutkern.identity_lut(2))
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted([working.name, elsewhere.name, foreign.name, "new.cube"])
    finally:
        quiet.kill()
        quiet.wait()


def test_temporaries_name_their_process(tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    lutkern.write_cube(tmp_path / "a.cube", lutkern.identity_lut(2))
    assert seen and seen[0].startswith(f".a.cube.{os.getpid()}.{lutkern.files._HOST}.")


def test_overwrite_replaces_a_symlink_never_the_file_it_points_to(setup, tmp_path):
    precious = tmp_path / "precious.png"
    precious.write_bytes(b"not an input, not to be written through")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "p00.png").symlink_to(precious)
    assert _predict(setup, setup / "model.pt", setup / "in/p00.png", tmp_path / "o") == 0
    assert precious.read_bytes() == b"not an input, not to be written through"
    assert not (tmp_path / "o" / "p00.png").is_symlink() and (tmp_path / "o" / "p00.cube").is_file()
