"""python -m img2lut.train: a tiny end-to-end run, exact resume, presets and one-line CLI errors."""

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import img2lut.trainer as trainer_mod
import lutkern
from img2lut import checkpoint
from img2lut.config import PRESETS, config_from_flags
from img2lut.image_stats import image_stats
from img2lut.train import main

LUT = 5  # small LUT, small images: the whole run takes about a second


pytestmark = pytest.mark.usefixtures("fast_small_tensors")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, write_patch_pairs):
    """Eight 32x32 pairs graded by the bw look, with truth.cube beside the two folders."""
    root = tmp_path_factory.mktemp("pairs")
    truth = lutkern.looks["bw"](size=LUT)
    write_patch_pairs(root, [f"p{i}" for i in range(8)], truth, torch.Generator().manual_seed(0))
    lutkern.write_cube(root / "truth.cube", truth)
    return root


def _args(pairs: Path, out: Path, *extra: str, recipe: tuple[str, ...] = ("--recipe", "adaptive",
          "--normalise", "none", "--no-refit-all", "--no-readout")) -> list[str]:
    """A tiny run; by default the CNN is trained whatever the diagnosis would say from the fitted LUT alone,
    and the kept model is the kept epoch's (no refit on all pairs)."""
    return ["--inputs", str(pairs / "inputs"), "--targets", str(pairs / "targets"), "--out", str(out),
            "--image-size", "32", "--cnn-size", "16", "--loss-stride", "2", "--lut-size", str(LUT),
            "--batch-size", "3", "--epochs", "2", "--val-fraction", "0.25", "--lr", "1e-3",
            "--bias-lr", "1e-2", *recipe, *extra]


def _rows(run: Path) -> list[dict]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_tiny_run_writes_every_artifact(pairs, tmp_path):
    weights = ["--ssim-weight", "0.1", "--smooth-weight", "0.01", "--tv-weight", "0.01",
               "--mono-weight", "0.01"]
    assert main(_args(pairs, tmp_path, "--preview-every", "1", "--experiment", "tiny", *weights)) == 0
    run = tmp_path / "models" / "tiny"
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(rows[0]) == {"epoch", "train_loss", "train_mse", "val_mse", "val_psnr", "lr", "seconds"}
    for name in ("loss.png", "lut.png", "previews/epoch_0001.png", "previews/epoch_0002.png"):
        with Image.open(run / name) as im:
            assert im.size[0] > 50 and im.size[1] > 50
    with Image.open(run / "previews/epoch_0002.png") as im:  # input | target | output columns of 32 px
        assert im.size[0] == 3 * 32 + 4 * 2

    payload = checkpoint.load_checkpoint(run / "checkpoint.pt")
    assert payload["config"]["lut_size"] == LUT and payload["state"]["epoch"] == 2
    summary = json.loads((run / "summary.json").read_text())
    # model.pt: the kept epoch's weights alone (the best validation epoch; 0 is the fitted start LUT).
    kept = checkpoint.load_checkpoint(run / "model.pt")
    assert kept["state"] is None and kept["model_config"] == payload["model_config"]
    assert summary["kept_epoch"] == payload["state"]["best"]["epoch"] and summary["readout"] is None
    for name, tensor in kept["model"].items():
        torch.testing.assert_close(tensor, payload["state"]["best"]["model"][name], rtol=0, atol=0)
    model = checkpoint.model_from_checkpoint(kept)

    # lut.cube is the mean of the LUTs the kept model predicts for the validation pairs (2 of 8).
    from img2lut.data import pair_files, resize, split_names
    from img2lut.pair_loading import load_pairs

    data = load_pairs(pair_files(pairs / "inputs", pairs / "targets"), 32)
    _, val_idx = split_names(data.names, 0.25)
    val = data.subset(val_idx)
    val_inputs, val_targets = val.inputs.tensor(), val.targets.tensor()
    with torch.no_grad():
        luts = model.predict_lut(resize(val_inputs, 16), image_stats(val_inputs))  # full-size statistics
        out, _ = model(resize(val_inputs, 16), full=val_inputs)
    cube = lutkern.read_cube(run / "lut.cube").lut3d
    torch.testing.assert_close(cube, luts.mean(0), atol=1e-6, rtol=0)  # .cube keeps 6+ decimals

    mse = float((out - val_targets).square().mean())
    assert summary["val_psnr"] == pytest.approx(10 * torch.log10(torch.tensor(1 / mse)).item(), abs=1e-4)
    if summary["kept_epoch"]:
        kept_row = rows[summary["kept_epoch"] - 1]
        assert summary["val_psnr"] == pytest.approx(float(kept_row["val_psnr"]), abs=1e-3)
    per_image = 10 * torch.log10(1 / (out - val_targets).square().mean((1, 2, 3)))
    assert summary["val_psnr_worst_image"] == pytest.approx(float(per_image.min()), abs=1e-4)
    assert summary["val_psnr_mean_image"] == pytest.approx(float(per_image.mean()), abs=1e-4)
    truth = lutkern.read_cube(pairs / "truth.cube").lut3d
    assert summary["lut_rmse_all"] == pytest.approx(float((cube - truth).square().mean().sqrt()), abs=1e-5)
    assert 0 < summary["covered_fraction"] <= 1 and "lut_rmse_covered" in summary


def _interrupt_at_call(monkeypatch, n: int) -> None:
    """Make the n-th loss evaluation deliver a SIGINT, as a Ctrl-C during that step would."""
    calls = {"n": 0}
    real = trainer_mod.total_loss

    def loss_with_ctrl_c(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "total_loss", loss_with_ctrl_c)


@pytest.mark.parametrize("scheduler", ["cosine", "plateau"])
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(pairs, tmp_path, monkeypatch, scheduler):
    """Bitwise equal on CPU: RNG states, data order, optimizer and scheduler all continue exactly."""
    extra = ("--epochs", "3", "--scheduler", scheduler, "--plateau-patience", "0", "--checkpoint-every", "2")
    assert main(_args(pairs, tmp_path, "--experiment", "straight", *extra)) == 0
    # 6 training pairs, batch 3: 2 steps per epoch; stop during the first step of epoch 2.
    _interrupt_at_call(monkeypatch, 3)
    assert main(_args(pairs, tmp_path, "--experiment", "stopped", *extra)) == trainer_mod.INTERRUPTED
    monkeypatch.undo()
    monkeypatch.setenv("LUTKERN_BACKEND", "torch")
    saved = checkpoint.load_checkpoint(tmp_path / "models" / "stopped" / "checkpoint.pt")
    assert (saved["state"]["epoch"], saved["state"]["step"]) == (1, 1)
    assert main(["--resume", str(tmp_path / "models" / "stopped" / "checkpoint.pt")]) == 0

    a = checkpoint.load_checkpoint(tmp_path / "models" / "straight" / "checkpoint.pt")
    b = checkpoint.load_checkpoint(tmp_path / "models" / "stopped" / "checkpoint.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    def without_time(run):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in _rows(tmp_path / "models" / run)]

    assert without_time("straight") == without_time("stopped")


def test_resume_may_extend_the_run_but_not_change_the_architecture(pairs, tmp_path, capsys):
    assert main(_args(pairs, tmp_path, "--epochs", "1", "--scheduler", "plateau")) == 0
    assert main(_args(pairs, tmp_path, "--epochs", "1")) == 2  # the run exists: no silent overwrite
    assert "--resume" in capsys.readouterr().err
    assert main(["--resume", "--out", str(tmp_path), "--experiment", "pairs", "--lut-size", "9"]) == 2
    assert "--lut-size 9 differs" in capsys.readouterr().err
    assert main(["--resume", "--out", str(tmp_path), "--experiment", "pairs", "--epochs", "2"]) == 0
    assert [r["epoch"] for r in _rows(tmp_path / "models" / "pairs")] == ["1", "2"]


def test_seed_preset_is_the_seed_experiment():
    config = config_from_flags({"preset": "seed"})
    seed = (config.batch_size, config.lut_size, config.lr, config.epochs, config.image_size)
    assert seed == (64, 33, 1e-2, 500, 256)
    assert (config.scheduler, config.plateau_factor, config.plateau_patience) == ("plateau", 0.1, 10)
    # The CNN sees the whole 256x256 image, the loss is plain MSE on the whole image, default init.
    assert (config.cnn_size, config.loss_stride, config.init, config.bias_lr) == (0, 1, "default", None)
    assert config.ssim_weight == config.smooth_weight == config.tv_weight == config.mono_weight == 0
    # Explicit flags override the preset.
    config = config_from_flags({"preset": "seed", "epochs": 7})
    assert config.epochs == 7 and set(PRESETS) == {"default", "seed"}


CASES = ["missing", "empty", "lut_size_1", "unmatched", "inputs_only", "bad_fraction"]


@pytest.mark.parametrize("case", CASES)
def test_bad_arguments_are_one_line_errors(pairs, tmp_path, capsys, case):
    empty = tmp_path / "empty"
    empty.mkdir()
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    Image.new("RGB", (8, 8)).save(lonely / "p0.png")
    Image.new("RGB", (8, 8)).save(lonely / "stray.png")
    argv = {
        "missing": _args(pairs, tmp_path) + ["--inputs", str(tmp_path / "nope")],
        "empty": _args(pairs, tmp_path) + ["--targets", str(empty)],
        "lut_size_1": _args(pairs, tmp_path) + ["--lut-size", "1"],
        "unmatched": _args(pairs, tmp_path) + ["--targets", str(lonely)],
        "inputs_only": ["--inputs", str(pairs / "inputs"), "--out", str(tmp_path)],
        "bad_fraction": _args(pairs, tmp_path) + ["--val-fraction", "1.5"],
    }[case]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("python -m img2lut.train: error:")
    if case == "unmatched":
        assert "stray" in err and "p1" in err
    assert not (tmp_path / "models").exists()


def test_format_true_lut_and_init_from_in_other_formats(pairs, tmp_path):
    """--format names the run's mean LUT file; --true-lut and --init-from read any LUT format."""
    truth = lutkern.read_cube(pairs / "truth.cube")
    lutkern.write_lut(tmp_path / "truth.spi3d", truth.lut3d, precision=8)
    lutkern.write_lut(tmp_path / "start.3dl", truth.lut3d)
    argv = _args(pairs, tmp_path, "--epochs", "1", "--experiment", "fmt", "--format", "clf",
                 "--true-lut", str(tmp_path / "truth.spi3d"), "--init-from", str(tmp_path / "start.3dl"))
    assert main(argv) == 0
    run = tmp_path / "models" / "fmt"
    assert (run / "lut.clf").is_file() and not (run / "lut.cube").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["truth"] == str(tmp_path / "truth.spi3d") and summary["lut_cube"].startswith("lut.clf")
    assert lutkern.read_lut(run / "lut.clf").steps[0].lut3d.shape == (LUT, LUT, LUT, 3)


def test_command_line_exit_status_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "img2lut.train", "--lut-size", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--lut-size must be between 2 and 256" in proc.stderr


def test_a_run_that_only_gets_worse_keeps_the_fitted_lut(pairs, tmp_path):
    """Epoch 0 of the default recipe is one LUT fitted to the training pairs (img2lut.fit_lut, the same
    call as python -m img2lut.fit): the basis head starts there exactly, and when every epoch after it
    does worse on the validation photos, that LUT is what the run keeps, in model.pt and checkpoint.pt."""
    from img2lut import fit_lut, load
    from img2lut.data import group_names, pair_files, split_groups
    from img2lut.pair_loading import load_pairs

    wreck = ("--epochs", "1", "--lr", "1", "--bias-lr", "10")  # Adam at lr 10 throws the LUT tables away
    assert main(_args(pairs, tmp_path, *wreck)) == 0
    run = tmp_path / "models" / "pairs"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["kept_epoch"] == 0 and summary["epochs"] == 1 and summary["refit_all_pairs"] is None

    data = load_pairs(pair_files(pairs / "inputs", pairs / "targets"), 32)
    train_idx, _ = split_groups(group_names(data.names).groups, 0.25)
    fitted = fit_lut(data.inputs[train_idx], data.targets[train_idx], lut_size=LUT, batch_pixels=6 * 32 * 32)
    images = torch.rand(3, 3, 32, 32)
    for name in ("model.pt", "checkpoint.pt"):
        luts = load(run / name, device="cpu").predict_lut(images)
        torch.testing.assert_close(luts, fitted.lut.expand_as(luts), atol=1e-6, rtol=0, msg=name)
    last = checkpoint.load_checkpoint(run / "checkpoint.pt")["model"]["base_lut"].view(LUT, LUT, LUT, 3)
    assert (last - fitted.lut).abs().max() > 0.1  # the checkpoint still holds the last epoch for --resume


def test_the_adaptive_start_reads_the_statistics_and_is_refitted_on_all_pairs(pairs, tmp_path, monkeypatch):
    """By default (--readout) epoch 0 of the adaptive recipe is the fitted LUT and the weights
    img2lut.readout reads off each photo's statistics; a run whose every epoch does worse keeps it, and
    refits both on all pairs (the readout then sees all 8)."""
    calls = []
    real = trainer_mod.fit_readout
    monkeypatch.setattr(trainer_mod, "fit_readout",
                        lambda *a, **k: calls.append((len(a[1]), k["choice"])) or real(*a, **k))
    wreck = ("--epochs", "1", "--lr", "1", "--bias-lr", "10")
    assert main(_args(pairs, tmp_path, *wreck, recipe=("--recipe", "adaptive", "--normalise", "none"))) == 0
    summary = json.loads((tmp_path / "models" / "pairs" / "summary.json").read_text())
    assert summary["kept_epoch"] == 0 and summary["refit_all_pairs"] == 8
    # The refit keeps what cross-validation chose on the training pairs.
    assert [n for n, _ in calls] == [6, 8] and calls[0][1] is None and summary["readout"]["pairs"] == 8
    assert calls[1][1] == trainer_mod.Readout(**{**summary["readout"], "pairs": 6})
    assert summary["readout"]["folds"] >= 2 and summary["readout"]["components"] >= 0


def test_dihedral_gives_the_eight_symmetries_of_a_square():
    from img2lut.trainer import dihedral

    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    images = a.expand(8, 3, 2, 2)
    out = dihedral(images, torch.arange(8))
    # Quarter turns counter-clockwise (torch.rot90 on (H,W)), then the same mirrored left-right.
    turns = [[[1, 2], [3, 4]], [[2, 4], [1, 3]], [[4, 3], [2, 1]], [[3, 1], [4, 2]]]
    expected = torch.tensor(turns + [[row[::-1] for row in t] for t in turns], dtype=torch.float32)
    torch.testing.assert_close(out, expected[:, None].expand(8, 3, 2, 2))
    assert len({tuple(o[0].flatten().tolist()) for o in out}) == 8


def test_a_later_epoch_that_validates_best_is_kept(pairs, tmp_path, monkeypatch):
    """Validation scores scripted per evaluation (epoch 0 = the fit, then epochs 1..3): the run keeps
    epoch 2, the best, in model.pt, and not the start or the last epoch."""
    from img2lut.evaluation import Evaluation

    real = trainer_mod.evaluate_model
    scripted = iter([30.0, 31.0, 35.0, 32.0])  # mean per-image PSNR of epochs 0, 1, 2, 3

    def scripted_evaluate(*args, **kwargs):
        result = real(*args, **kwargs)
        psnr = next(scripted, None)
        if psnr is None:  # the final measurement of the kept model
            return result
        mse = torch.full_like(result.image_mse, 10 ** (-psnr / 10))
        return Evaluation(float(mse.mean()), mse, result.mean_lut, result.outputs, result.luts)

    monkeypatch.setattr(trainer_mod, "evaluate_model", scripted_evaluate)
    assert main(_args(pairs, tmp_path, "--epochs", "3", "--checkpoint-every", "1")) == 0
    run = tmp_path / "models" / "pairs"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["kept_epoch"] == 2 and summary["epochs"] == 3
    state = checkpoint.load_checkpoint(run / "checkpoint.pt")
    kept = checkpoint.load_checkpoint(run / "model.pt")["model"]
    assert state["state"]["best"]["epoch"] == 2
    for name, tensor in kept.items():
        torch.testing.assert_close(tensor, state["state"]["best"]["model"][name], rtol=0, atol=0)
    assert (kept["base_lut"] - state["model"]["base_lut"]).abs().max() > 0  # not the last epoch's


def test_a_global_look_by_default_is_the_fit_on_all_pairs(pairs, tmp_path, capsys):
    """With no recipe flag the run diagnoses the pairs: one look (the bw look on every pair), so no CNN is
    trained and model.pt is one LUT fitted to all eight pairs, training and validation; the summary and
    the log name the diagnosis."""
    from img2lut import fit_lut, load
    from img2lut.data import group_names, pair_files, split_groups
    from img2lut.pair_loading import load_pairs

    assert main(_args(pairs, tmp_path, recipe=())) == 0
    run = tmp_path / "models" / "pairs"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["recipe"] == "one_look" and summary["normalise"] == "none"
    assert summary["epochs"] == 0 and summary["kept_epoch"] == 0 and summary["refit_all_pairs"] == 8
    assert summary["diagnosis"]["recipe"] == "one_look"
    assert "diagnosis: one look" in capsys.readouterr().err
    assert summary["diagnosis"]["text"].startswith("diagnosis: one look")
    data = load_pairs(pair_files(pairs / "inputs", pairs / "targets"), 32)
    order = torch.cat([torch.as_tensor(i) for i in split_groups(group_names(data.names).groups, 0.25)])
    fitted = fit_lut(data.inputs[order], data.targets[order], lut_size=LUT, batch_pixels=8 * 32 * 32)
    luts = load(run / "model.pt", device="cpu").predict_lut(torch.rand(2, 3, 32, 32))
    torch.testing.assert_close(luts, fitted.lut.expand_as(luts), atol=1e-6, rtol=0)
