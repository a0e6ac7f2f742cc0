"""Crafted inputs: `.cube` numbers that do not fit float32, absurd domains, shapers and domains that the
true-LUT readers must not drop, a loss that turns NaN, and bad files that must fail before any work."""

import errno
import os
import re
import signal
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import img2lut
import img2lut.trainer as trainer_mod
import img2lut.training_data as training_data_mod
import lutkern
import lutkern.files
from img2lut import checkpoint
from img2lut.data import read_true_lut
from img2lut.evaluate import main as evaluate_main
from img2lut.fit import main as fit_main
from img2lut.model import ResNetLUTGenerator
from img2lut.predict import main as predict_main
from img2lut.train import main as train_main
from lutkern import CubeFormatError, CubeLUT, read_cube
from lutkern.apply import main as apply_main
from lutkern.imageio import decode_image

pytestmark = pytest.mark.usefixtures("fast_small_tensors")

_ID2 = "".join(f"{r} {g} {b}\n" for b in (0, 1) for g in (0, 1) for r in (0, 1))

BAD_NUMBERS = {  # name -> (file text, line of the error, message)
    "value beyond float32": ("LUT_3D_SIZE 2\n" + _ID2.replace("0 1 1", "0 3.5e38 1"), 8, "not finite in"),
    "negative value beyond float32": (
        "LUT_3D_SIZE 2\n" + _ID2.replace("1 0 0", "-3.5e38 0 0"),
        3,
        "not finite",
    ),
    "shaper value beyond float32": ("LUT_1D_SIZE 2\n0 0 0\n1 1e39 1\n", 3, "not finite in"),
    "neighbours whose difference overflows": (
        "LUT_3D_SIZE 2\n" + _ID2.replace("0 0 0", "-3e38 0 0").replace("1 1 1", "3e38 1 1"), 2, "interpolate"
    ),
    "DOMAIN_MIN -1e308": ("DOMAIN_MIN -1e308 0 0\nLUT_3D_SIZE 2\n" + _ID2, 1, "unusable in float32"),
    "DOMAIN_MAX 1e39": ("DOMAIN_MAX 1e39 1 1\nLUT_3D_SIZE 2\n" + _ID2, 1, "unusable in float32"),
    "span overflows": ("DOMAIN_MIN -3e38 0 0\nDOMAIN_MAX 3e38 1 1\nLUT_3D_SIZE 2\n" + _ID2, 2, "unusable"),
    "span underflows": ("LUT_3D_INPUT_RANGE 0 1e-40\nLUT_3D_SIZE 2\n" + _ID2, 1, "unusable in float32"),
    "span empty in float32": ("LUT_3D_INPUT_RANGE 1 1.00000000001\nLUT_3D_SIZE 2\n" + _ID2, 1, "unusable"),
    "shaper range underflows": ("LUT_1D_INPUT_RANGE 0 1e-39\nLUT_1D_SIZE 2\n0 0 0\n1 1 1\n", 1, "unusable"),
}


@pytest.mark.parametrize("name", sorted(BAD_NUMBERS))
def test_cube_numbers_that_float32_cannot_hold_are_refused(tmp_path, name):
    text, line, message = BAD_NUMBERS[name]
    path = tmp_path / "bad.cube"
    path.write_text(text)
    with pytest.raises(CubeFormatError, match=rf"^{re.escape(str(path))}:{line}: .*{message}"):
        read_cube(path)


def test_values_beyond_float32_read_in_float64():
    text = BAD_NUMBERS["value beyond float32"][0]
    assert lutkern.cube.parse_cube(text, dtype=torch.float64).lut3d.abs().max() == 3.5e38


@pytest.mark.parametrize(
    "domain",
    [
        ((-1e308,) * 3, (1.0,) * 3),
        ((0.0,) * 3, (1e-40,) * 3),
        ((0.0,) * 3, (float("inf"),) * 3),
        ((1.0,) * 3, (0.0,) * 3),
    ],
)
def test_cubelut_refuses_unusable_domains(domain):
    with pytest.raises(ValueError, match="domain"):
        CubeLUT(lutkern.identity_lut(2), lut3d_domain=domain)


# ----------------------------------------------------------------------- the whole transform as a lattice


def _lattice(size: int) -> torch.Tensor:
    return lutkern.identity_lut(size, dtype=torch.float64)


def test_read_true_lut_keeps_the_shaper(tmp_path):
    """A squaring shaper before an identity cube is x**2 per channel: the lattice must show it."""
    ramp = torch.linspace(0, 1, 4097, dtype=torch.float64)[:, None].expand(-1, 3)
    lutkern.write_cube(
        tmp_path / "s.cube", CubeLUT(lutkern.identity_lut(2), ramp.square().float()), precision=9
    )
    got = read_true_lut(tmp_path / "s.cube", 5)
    torch.testing.assert_close(got.double(), _lattice(5).square(), atol=1e-6, rtol=0)


def test_read_true_lut_keeps_the_domain(tmp_path):
    """An identity table over the domain [0, 2] halves every input in [0, 1]."""
    lutkern.write_cube(tmp_path / "d.cube", lutkern.identity_lut(3), domain_max=(2.0, 2.0, 2.0))
    torch.testing.assert_close(
        read_true_lut(tmp_path / "d.cube", 5).double(), _lattice(5) / 2, atol=1e-6, rtol=0
    )


def test_read_true_lut_of_a_plain_table_is_the_table(tmp_path):
    lut = lutkern.looks["teal_orange"](7)
    lutkern.write_cube(tmp_path / "t.cube", lut)
    torch.testing.assert_close(read_true_lut(tmp_path / "t.cube", 7), lut, atol=2e-6, rtol=0)


def test_colour_science_03_file_reads_with_its_range_as_the_3d_range():
    """colour-science 0.3.11 wrote LUT_1D_INPUT_RANGE in this 3D-only file: its table samples the sRGB
    EOTF over [-1, 3], which is the range it names (colour-science 0.4 reads that file over [0, 1])."""
    colour = pytest.importorskip("colour")
    path = Path(colour.__file__).parent / "io/luts/tests/resources/resolve_cube/eotf_sRGB_3D.cube"
    if not path.is_file():
        pytest.skip("this colour-science ships without the resolve_cube fixtures")
    with pytest.warns(UserWarning, match=r"eotf_sRGB_3D.cube:5: LUT_1D_INPUT_RANGE .* 3D input range"):
        cube = read_cube(path, dtype=torch.float64)
    theirs = colour.read_LUT(str(path))  # table indexed [r, g, b, c]
    np.testing.assert_allclose(cube.lut3d.permute(2, 1, 0, 3).numpy(), theirs.table, rtol=0, atol=0)
    assert cube.lut3d_domain == ((-1.0,) * 3, (3.0,) * 3) and cube.shaper is None
    nodes = torch.linspace(-1, 3, 8, dtype=torch.float64)
    out = cube.apply(nodes.expand(3, 1, -1).contiguous(), backend="torch")
    np.testing.assert_allclose(out[0, 0].numpy(), colour.models.eotf_sRGB(nodes.numpy()), atol=1e-6)


# ------------------------------------------------------------------------------------------------ train


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, write_patch_pairs):
    root = tmp_path_factory.mktemp("pairs")
    write_patch_pairs(
        root, [f"p{i}" for i in range(6)], lutkern.looks["bw"](5), torch.Generator().manual_seed(0)
    )
    return root


def _train_args(pairs, out, *extra):
    return [
        "--inputs",
        str(pairs / "inputs"),
        "--targets",
        str(pairs / "targets"),
        "--out",
        str(out),
        "--image-size",
        "32",
        "--cnn-size",
        "16",
        "--lut-size",
        "5",
        "--batch-size",
        "2",
        "--epochs",
        "2",
        "--val-fraction",
        "0.34",
        "--checkpoint-every",
        "1",
        "--recipe",  # the CNN is trained, whatever the diagnosis would say of these pairs
        "adaptive",
        "--normalise",
        "none",
        *extra,
    ]


def test_training_stops_at_the_first_non_finite_loss_and_keeps_the_last_checkpoint(
    pairs, tmp_path, capsys, monkeypatch
):
    real, calls = trainer_mod.total_loss, []

    def loss_turning_nan(*args, **kwargs):
        loss, parts = real(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan") if len(calls) == 3 else loss), parts  # epoch 2, step 1 (2 steps an epoch)

    monkeypatch.setattr(trainer_mod, "total_loss", loss_turning_nan)
    assert train_main(_train_args(pairs, tmp_path, "--experiment", "nan")) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "not finite" in lines[0] and "epoch 2, step 1" in lines[0], err
    payload = checkpoint.load_checkpoint(tmp_path / "models" / "nan" / "checkpoint.pt")
    assert payload["state"]["epoch"] == 1 and payload["state"]["step"] == 0
    assert all(torch.isfinite(t).all() for t in payload["model"].values() if t.is_floating_point())
    assert not (tmp_path / "models" / "nan" / "summary.json").exists()


@pytest.mark.parametrize("flag", ["--true-lut", "--init-from"])
@pytest.mark.parametrize("kind", ["malformed", "folder", "beyond float32"])
def test_bad_true_or_start_lut_fails_before_any_image_is_decoded(
    pairs, tmp_path, capsys, monkeypatch, flag, kind
):
    bad = tmp_path / "bad.cube"
    if kind == "folder":
        bad.mkdir()
    else:
        bad.write_text(
            "LUT_3D_SIZE 2\n0 0 0\n" if kind == "malformed" else BAD_NUMBERS["value beyond float32"][0]
        )

    def no_decoding(*args, **kwargs):
        raise AssertionError("images decoded before the LUT was checked")

    monkeypatch.setattr(training_data_mod, "load_sets", no_decoding)
    extra = [flag, str(bad)] + (["--init", "identity"] if flag == "--init-from" else [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert train_main(_train_args(pairs, tmp_path, *extra)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m img2lut.train: error: ") and str(bad) in err, (
        err
    )


# ------------------------------------------------------------------------- devices and backends: one line

COMMANDS = {  # program name -> main, arguments before the device flags (paths need not exist: checked first)
    "python -m lutkern.apply": (apply_main, ["--lut", "bw", "x.png", "--out", "o"]),
    "python -m img2lut.predict": (predict_main, ["model.pt", "x.png", "--out", "o"]),
    "python -m img2lut.evaluate": (evaluate_main, ["model.pt", "--inputs", "i", "--targets", "t"]),
    "python -m img2lut.train": (train_main, ["--inputs", "i", "--targets", "t"]),
    "python -m img2lut.fit": (fit_main, ["--inputs", "i", "--targets", "t", "--out", "x"]),
}
DEVICES = ["bogus", "cuda:99", "meta"] + ([] if torch.cuda.is_available() else ["cuda"])


@pytest.mark.parametrize("prog", sorted(COMMANDS))
@pytest.mark.parametrize("device", DEVICES)
def test_unusable_devices_are_one_line_errors(tmp_path, monkeypatch, capsys, prog, device):
    monkeypatch.chdir(tmp_path)
    run, argv = COMMANDS[prog]
    assert run([*argv, "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error: --device") and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_triton_where_it_cannot_run_is_a_one_line_error(tmp_path, monkeypatch, capsys, prog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # the suite runs Triton's interpreter on the CPU otherwise
    run, argv = COMMANDS[prog]
    assert run([*argv, "--device", "cpu", "--backend", "triton"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error: --backend triton on cpu"), err


@pytest.mark.parametrize("prog", sorted(COMMANDS))
@pytest.mark.parametrize("extra", [["--bogus"], ["--quality", "500"], ["--epochs", "many"], []])
def test_usage_errors_are_one_line(tmp_path, monkeypatch, capsys, prog, extra):
    monkeypatch.chdir(tmp_path)
    run, argv = COMMANDS[prog]
    with pytest.raises(SystemExit) as stop:
        run([*argv, *extra] if extra else argv[:1])  # no arguments after the first: some are missing
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"{prog}: error: ") and err.endswith("(see --help)\n")
    assert list(tmp_path.iterdir()) == []


def test_file_names_are_shown_once_exactly_and_on_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    names = ["two  spaces.png", "new\nline.png", "esc\x1b[31mape.png"]
    for name in names:
        Path(name).write_text("not an image")
    assert apply_main(["--lut", "bw", *names, "--out", "o"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert sorted(errors) == sorted(  # once: Pillow's own text, which names the file again, is trimmed
        f"error: {shown}: cannot read image (UnidentifiedImageError: cannot identify image file)"
        for shown in ("two  spaces.png", "new line.png", "esc\\x1b[31mape.png"))


def test_warnings_are_one_line_too(tmp_path, capsys):
    colour = pytest.importorskip("colour")
    path = Path(colour.__file__).parent / "io/luts/tests/resources/resolve_cube/eotf_sRGB_3D.cube"
    if not path.is_file():
        pytest.skip("this colour-science ships without the resolve_cube fixtures")
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")
    assert apply_main(["--lut", str(path), str(tmp_path / "x.png"), "--out", str(tmp_path / "o")]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if ": warning:" in line]
    assert len(warned) == 1 and warned[0].startswith("python -m lutkern.apply: warning: ")
    assert "LUT_1D_INPUT_RANGE" in warned[0]


# ------------------------------------------------------------------------------- crafted checkpoints


@pytest.fixture(scope="module")
def run_checkpoint(pairs, tmp_path_factory):
    """A real two-epoch run's checkpoint (its training state included)."""
    out = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as patch:  # module fixtures run before fast_small_tensors
        patch.setenv("LUTKERN_BACKEND", "torch")
        assert train_main(_train_args(pairs, out, "--experiment", "good")) == 0
    return checkpoint.load_checkpoint(out / "models" / "good" / "checkpoint.pt")


def _damage(payload: dict, how: str) -> dict:
    payload = {**payload, "state": dict(payload["state"]), "model": dict(payload["model"])}
    if how == "no training state":
        payload["state"] = None
    elif how == "no optimizer state":
        del payload["state"]["optimizer"]
    elif how == "epoch is text":
        payload["state"]["epoch"] = "1"
    elif how == "rng state is a number":
        payload["state"]["rng"] = {"torch": 3, "aug": 4}
    elif how == "config of another version":
        payload["config"] = {**payload["config"], "future_setting": 1}
    elif how == "config is a list":
        payload["config"] = [1, 2]
    elif how == "lut_size 120 declared":
        payload["model_config"] = {**payload["model_config"], "lut_size": 120}
        payload["config"] = {**payload["config"], "lut_size": 120}
    elif how == "a weight of another shape":
        name = next(iter(payload["model"]))
        payload["model"][name] = payload["model"][name][:1]
    elif how == "a weight missing":
        payload["model"].pop(next(iter(payload["model"])))
    elif how == "weights broadcast from one value":  # a few bytes on disk declaring a full-size model
        payload["model"] = {
            k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in payload["model"].items()
        }
    elif how == "an Adam moment of another shape":  # the fused step would write out of bounds
        optimizer = payload["state"]["optimizer"]
        moments = {k: dict(v) for k, v in optimizer["state"].items()}
        first = next(iter(moments))
        moments[first]["exp_avg"] = moments[first]["exp_avg"].flatten()[:3]
        payload["state"]["optimizer"] = {**optimizer, "state": moments}
    elif how == "history is text":
        payload["state"]["history"] = "abc"
    elif how == "history rows without metrics":
        payload["state"]["history"] = [{"x": "y"}]
    elif how == "loss sum is a tensor":
        payload["state"]["loss_sum"] = torch.ones(5)
    elif how == "time is NaN":
        payload["state"]["seconds"] = float("nan")
    elif how == "another scheduler's state":
        payload["state"]["scheduler"] = {"foo": 1}
    elif how == "loss scaler state is text":
        payload["state"]["scaler"] = "x"
    elif how == "lr is text":
        payload["config"] = {**payload["config"], "lr": "fast"}
    elif how == "a batch of 10^12":
        payload["config"] = {**payload["config"], "batch_size": 10**12}
    elif how == "config declares lut_size 256":  # the model_config and weights are still size 5
        payload["config"] = {**payload["config"], "lut_size": 256}
    elif how == "format is a tensor":
        payload["format"] = torch.tensor([1, 1])
    elif how == "kept epoch is text":
        payload["state"]["best"] = {**payload["state"]["best"], "epoch": "0"}
    elif how == "a kept weight of another shape":
        kept = dict(payload["state"]["best"]["model"])
        kept["base_lut"] = kept["base_lut"][:7]
        payload["state"]["best"] = {**payload["state"]["best"], "model": kept}
    elif how == "float64 weights":
        payload["model"] = {
            k: v.double() if v.is_floating_point() else v for k, v in payload["model"].items()
        }
    return payload


DAMAGE = [
    "no training state",
    "no optimizer state",
    "epoch is text",
    "rng state is a number",
    "config of another version",
    "config is a list",
    "lut_size 120 declared",
    "a weight of another shape",
    "a weight missing",
    "float64 weights",
    "kept epoch is text",
    "a kept weight of another shape",
    "weights broadcast from one value",
    "format is a tensor",
    "an Adam moment of another shape",
    "history is text",
    "history rows without metrics",
    "loss sum is a tensor",
    "time is NaN",
    "another scheduler's state",
    "loss scaler state is text",
    "lr is text",
    "a batch of 10^12",
    "config declares lut_size 256",
]


@pytest.mark.parametrize("how", DAMAGE)
def test_resume_from_a_damaged_checkpoint_is_one_line(run_checkpoint, pairs, tmp_path, capsys, how):
    path = tmp_path / "models" / "pairs" / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    torch.save(_damage(run_checkpoint, how), path)
    assert train_main(["--resume", str(path), "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith(f"python -m img2lut.train: error: {path}: ") and err.endswith(
        errors[0] + "\n"
    )


@pytest.mark.parametrize("how", [h for h in DAMAGE if "weight" in h or h == "lut_size 120 declared"])
def test_load_checks_every_weight_before_building_the_model(run_checkpoint, tmp_path, monkeypatch, how):
    built_on = []
    real = checkpoint.ResNetLUTGenerator

    def recording(*args, **kwargs):
        built_on.append(torch.get_default_device().type)
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "ResNetLUTGenerator", recording)
    damaged = _damage(run_checkpoint, how)
    if "kept" not in how:  # prediction uses the kept epoch's weights; without one (model.pt), the last
        damaged["state"] = None
    torch.save(damaged, tmp_path / "m.pt")
    with pytest.raises(checkpoint.CheckpointError, match=r"m\.pt: checkpoint does not hold a valid model"):
        img2lut.load(tmp_path / "m.pt", "cpu")
    assert built_on == ["meta"]  # never built for real
    torch.save(run_checkpoint, tmp_path / "ok.pt")
    img2lut.load(tmp_path / "ok.pt", "cpu")
    assert built_on == ["meta", "meta", "cpu"]


def test_a_second_ctrl_c_during_a_checkpoint_write_waits_for_it(tmp_path, monkeypatch):
    model = ResNetLUTGenerator(3, "trilinear", "identity")
    real_save = torch.save

    def interrupted_save(obj, f):
        # Arrives while the file is being written; raised in this thread, as a terminal's Ctrl-C reaches
        # the main thread (os.kill may hand it to another thread of the process, which trips it later).
        signal.raise_signal(signal.SIGINT)
        real_save(obj, f)

    monkeypatch.setattr(checkpoint.torch, "save", interrupted_save)
    # Python's own Ctrl-C handler, whatever an earlier test or library left installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            checkpoint.save_checkpoint(tmp_path / "c.pt", model=model, config={"n": 1})
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.undo()
    assert checkpoint.load_checkpoint(tmp_path / "c.pt")["config"] == {"n": 1}  # complete, and the new one
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _save_on_a_full_disk(*args, **kwargs):
    raise RuntimeError("unexpected pos")  # what torch.save reports when the disk fills


def test_a_full_disk_is_one_line_naming_the_file(pairs, tmp_path, monkeypatch, capsys):
    with monkeypatch.context() as patch:
        patch.setattr(lutkern.files.os, "fsync", _disk_full)
        with pytest.raises(OSError, match=rf"cannot write {re.escape(str(tmp_path / 'x.json'))}: No space"):
            with lutkern.files.atomic_open(tmp_path / "x.json", "w") as f:
                f.write("{}")
    assert list(tmp_path.iterdir()) == []  # no temporary left
    monkeypatch.setattr(checkpoint.torch, "save", _save_on_a_full_disk)
    assert train_main(_train_args(pairs, tmp_path, "--experiment", "full")) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("python -m img2lut.train: error: ")
    assert errors[0].endswith("checkpoint.pt: cannot write the checkpoint (unexpected pos)")
    assert not list((tmp_path / "models" / "full").glob(".*"))


# ------------------------------------------------------------------------------- files that never end


@pytest.mark.parametrize("kind", ["fifo", "device", "folder", "too large"])
def test_read_cube_reads_only_bounded_regular_files(tmp_path, monkeypatch, kind):
    path = tmp_path / "x.cube"
    if kind == "fifo":
        os.mkfifo(path)  # opening it would block until a writer came
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        path.write_text("LUT_3D_SIZE 2\n" + _ID2)
        monkeypatch.setattr(lutkern.cube, "MAX_CUBE_BYTES", path.stat().st_size - 1)
    done = []
    reader = threading.Thread(target=lambda: done.append(_error_of(read_cube, path)), daemon=True)
    reader.start()
    reader.join(10)
    assert done, f"read_cube({path}) did not return"
    message = "larger than" if kind == "too large" else "not a regular file"
    assert isinstance(done[0], CubeFormatError) and str(done[0]).startswith(f"{path}: {message}")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_images_are_read_only_from_regular_files(tmp_path, kind):
    path = tmp_path / "x.png"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    done = []
    reader = threading.Thread(target=lambda: done.append(_error_of(decode_image, path)), daemon=True)
    reader.start()
    reader.join(10)
    assert done, f"decode_image({path}) did not return"
    assert isinstance(done[0], ValueError) and str(done[0]).startswith(f"{path}: cannot read image")
    assert "not a regular file" in str(done[0])


def _error_of(fn, *args):
    try:
        fn(*args)
    except Exception as exc:
        return exc
    return None


# ------------------------------------------------------------------------------------ the dispatch


def test_automatic_backend_takes_a_float64_lut_with_a_float32_image(monkeypatch):
    monkeypatch.delenv("LUTKERN_BACKEND")  # the automatic choice: Triton (its interpreter) for float32
    image = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(1))
    lut = lutkern.looks["teal_orange"](5, dtype=torch.float64)
    out = lutkern.apply_lut(image, lut)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, lutkern.apply_lut(image, lut, backend="torch"))


@pytest.mark.parametrize("backend", [None, "torch", "triton"])
@pytest.mark.parametrize("shape", [(1, 3, 0, 5), (2, 3, 4, 0), (0, 3, 4, 5), (3, 0, 6)])
def test_empty_images_give_empty_results_on_every_backend(monkeypatch, backend, shape):
    monkeypatch.delenv("LUTKERN_BACKEND")
    image = torch.rand(shape, requires_grad=True)
    lut = lutkern.identity_lut(3).requires_grad_()
    out = lutkern.apply_lut(image, lut, backend=backend, interpolation="tetrahedral")
    assert out.shape == image.shape and out.dtype == image.dtype
    out.sum().backward()
    assert image.grad.shape == image.shape and torch.equal(lut.grad, torch.zeros_like(lut))
    with torch.no_grad():  # into an empty buffer too
        into = torch.empty(shape)
        assert lutkern.apply_lut(image, lut, backend=backend, out=into) is into


def test_only_the_first_frame_of_a_multi_page_image_is_graded_and_the_user_is_told(tmp_path, capsys):
    frames = [Image.new("RGB", (8, 6), colour) for colour in ((200, 10, 10), (10, 200, 10), (10, 10, 200))]
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    assert apply_main(["--lut", "bw", str(tmp_path / "pages.tif"), "--out", str(tmp_path / "o")]) == 0
    assert "pages.tif: only the first of its 3 frames is used" in capsys.readouterr().err
    with Image.open(tmp_path / "o" / "pages.tif") as out:
        assert getattr(out, "n_frames", 1) == 1
        graded = np.asarray(out).astype(int)
    red = torch.tensor([200 / 255, 10 / 255, 10 / 255]).view(3, 1, 1)  # frame 0 only
    want = np.round(lutkern.apply_lut(red, lutkern.looks["bw"](33), backend="torch").flatten().numpy() * 255)
    assert np.abs(graded - want).max() <= 1


def test_evaluate_reads_a_bad_true_lut_before_any_pair(pairs, tmp_path, capsys, monkeypatch):
    import img2lut.evaluation as evaluation

    model = ResNetLUTGenerator(5, "trilinear", "identity")
    checkpoint.save_checkpoint(tmp_path / "m.pt", model=model, config={"image_size": 32, "cnn_size": 16})
    (tmp_path / "bad.cube").write_text(BAD_NUMBERS["DOMAIN_MIN -1e308"][0])

    def no_decoding(*args, **kwargs):
        raise AssertionError("pairs decoded before the true LUT was checked")

    monkeypatch.setattr(evaluation, "load_pairs", no_decoding)
    argv = [str(tmp_path / "m.pt"), "--inputs", str(pairs / "inputs"), "--targets", str(pairs / "targets")]
    assert evaluate_main([*argv, "--true-lut", str(tmp_path / "bad.cube"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'bad.cube'}:1: domain min" in err, err
