"""img2lut.fit: a LUT fitted to pairs graded by a known look recovers that look where the data reaches,
stays finite and monotone where it does not, and the command line writes a readable .cube; and
``img2lut.train --init-from`` starts the CNN at a given LUT."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import lutkern
from img2lut import fit, train
from img2lut.fitting import PARAMETRIZATIONS, fit_lut, image_psnr
from img2lut.metrics import lattice_coverage

# The Triton interpreter (enabled in conftest) is far slower than the torch path; fitting is tested on
# the torch backend, whose agreement with Triton is tested elsewhere.
BACKEND = "torch"
D = 17


@pytest.fixture(autouse=True)
def _one_thread():
    # Small tensors gain nothing from a second thread, and spinning threads crawl on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bw_pairs():
    """Pairs graded by the bw look whose colours fill the box [0.15, 0.75]^3 only: the lattice points
    outside it get no data."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 64, 64, generator=gen) * 0.6 + 0.15
    truth = lutkern.looks["bw"](D)
    return x, lutkern.apply_lut(x, truth, backend=BACKEND), truth


@pytest.fixture(scope="module")
def bw_fit(bw_pairs):
    x, y, _ = bw_pairs
    return fit_lut(x, y, lut_size=D, steps=300, batch_pixels=8192, backend=BACKEND)


def test_recovers_known_look_on_covered_points(bw_pairs, bw_fit):
    x, y, truth = bw_pairs
    well = bw_fit.coverage >= 10  # >= 10 pixels of interpolation weight
    assert 500 < int(well.sum()) < D**3  # the data reaches part of the cube, not all of it
    # Tolerance: 0.02 (about 5 of 255 codes) on every well-covered lattice point, every channel.
    torch.testing.assert_close(bw_fit.lut[well], truth[well], atol=0.02, rtol=0)
    assert image_psnr(x, y, bw_fit.lut, backend=BACKEND).min() > 40


def test_uncovered_points_finite_in_range_and_monotone(bw_fit):
    lut = bw_fit.lut
    assert (bw_fit.coverage == 0).any()
    assert torch.isfinite(lut).all() and lut.min() >= 0 and lut.max() <= 1
    # The bw look is non-decreasing in r, g and b for every output channel; so must the fit be,
    # up to 0.02 per lattice step, also where only the regularizers decide.
    for dim in (0, 1, 2):
        assert lut.diff(dim=dim).min() >= -0.02, f"decreasing along lattice dim {dim}"


def test_coverage_is_the_trilinear_weight_of_each_lattice_point():
    gen = torch.Generator().manual_seed(1)
    pixels = torch.rand(3, 200, generator=gen, dtype=torch.float64).float()
    d = 5
    cov = lattice_coverage(pixels, d, backend=BACKEND)
    # Independent: the hat function max(0, 1 - |x (D-1) - i|) per axis, multiplied over the axes.
    t = pixels.double().numpy().T * (d - 1)  # (P, 3) r, g, b
    hat = np.maximum(0, 1 - np.abs(t[:, :, None] - np.arange(d)[None, None, :]))  # (P, 3, D)
    expected = np.einsum("pb,pg,pr->bgr", hat[:, 2], hat[:, 1], hat[:, 0])
    torch.testing.assert_close(cov.double(), torch.from_numpy(expected), atol=1e-5, rtol=1e-5)


def test_list_of_differently_sized_images_is_the_same_pixel_pool():
    gen = torch.Generator().manual_seed(2)
    a, b = torch.rand(3, 8, 12, generator=gen), torch.rand(3, 20, 5, generator=gen)
    look = lutkern.looks["teal_orange"](5)
    xs = [a, b]
    ys = [lutkern.apply_lut(im, look, backend=BACKEND) for im in xs]
    kw = dict(lut_size=5, steps=20, batch_pixels=256, backend=BACKEND, seed=3)
    as_list = fit_lut(xs, ys, **kw)
    # The same pixels as one (1,3,1,P) image: identical sampling, identical result.
    flat_x = torch.cat([im.reshape(3, -1) for im in xs], 1).reshape(1, 3, 1, -1)
    flat_y = torch.cat([im.reshape(3, -1) for im in ys], 1).reshape(1, 3, 1, -1)
    torch.testing.assert_close(as_list.lut, fit_lut(flat_x, flat_y, **kw).lut, atol=0, rtol=0)
    assert as_list.coverage.sum().item() == pytest.approx(8 * 12 + 20 * 5, rel=1e-5)
    assert len(as_list.losses) == 20


def test_logit_parametrization_and_init_are_honoured():
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 16, 16, generator=gen)
    look = lutkern.looks["faded_warm"](5)
    y = lutkern.apply_lut(x, look, backend=BACKEND)
    # Starting at the answer with a tiny step: the fit stays there (and the logits path is exercised).
    for param in PARAMETRIZATIONS:
        res = fit_lut(x, y, lut_size=5, steps=5, lr=1e-6, init=look, parametrization=param, backend=BACKEND)
        torch.testing.assert_close(res.lut, look, atol=2e-3, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(lut_size=1), ValueError, "size"),
        (dict(interpolation="cubic"), ValueError, "interpolation"),
        (dict(steps=0), ValueError, "steps"),
        (dict(batch_pixels=-5), ValueError, "batch_pixels"),
        (dict(lr=float("nan")), ValueError, "lr"),
        (dict(tv_weight=-1.0), ValueError, "tv"),
        (dict(parametrization="tanh"), ValueError, "parametrization"),
        (dict(init=torch.zeros(4, 4, 4, 3)), ValueError, "init"),
        (dict(init=[[0.5]]), TypeError, "init"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    x = torch.rand(1, 3, 4, 4)
    with pytest.raises(error, match=match):
        fit_lut(x, x, **{"lut_size": 5, "backend": BACKEND, **kwargs})


@pytest.mark.parametrize(
    ("inputs", "targets", "match"),
    [
        ([torch.rand(3, 4, 4)], [torch.rand(3, 4, 5)], "differ in size"),
        ([torch.rand(3, 4, 4)], [], "empty"),
        ([torch.rand(3, 4, 4)] * 2, [torch.rand(3, 4, 4)], "2 inputs but 1 targets"),
        (torch.rand(2, 4, 4, 3), torch.rand(2, 4, 4, 3), r"\(N,3,H,W\)"),
        ([torch.zeros(3, 4, 4, dtype=torch.uint8)], [torch.zeros(3, 4, 4)], "floating-point"),
    ],
)
def test_bad_images_raise(inputs, targets, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fit_lut(inputs, targets, lut_size=5, steps=1, backend=BACKEND)


def _write_pairs(root, look, n=6, size=12):
    gen = torch.Generator().manual_seed(5)
    (root / "in").mkdir()
    (root / "out").mkdir()
    for i in range(n):
        x = torch.rand(3, size, size, generator=gen)
        for folder, img in (("in", x), ("out", lutkern.apply_lut(x, look, backend=BACKEND))):
            codes = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            Image.fromarray(codes).save(root / folder / f"p{i}.png")


def test_cli_writes_a_readable_cube_and_preview(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LUTKERN_BACKEND", BACKEND)
    look = lutkern.looks["bw"](9)
    _write_pairs(tmp_path, look, size=32)
    out, preview = tmp_path / "fit.cube", tmp_path / "preview.png"
    rc = fit.main(["--inputs", str(tmp_path / "in"), "--targets", str(tmp_path / "out"), "--out", str(out),
                   "--lut-size", "9", "--image-size", "32", "--steps", "150", "--batch-pixels", "2048",
                   "--val-fraction", "0.34", "--preview", str(preview)])
    printed = capsys.readouterr()
    assert rc == 0
    assert "validation PSNR" in printed.out  # results on stdout, messages on stderr
    assert "4 training / 2 validation pairs" in printed.err and "lattice points" in printed.err
    cube = lutkern.read_cube(out)
    assert cube.lut3d.shape == (9, 9, 9, 3) and cube.title == "fit"
    # 4096 random colours reach the whole 9^3 lattice: the written LUT is close to the look (8-bit pairs).
    torch.testing.assert_close(cube.lut3d.float(), look, atol=0.05, rtol=0)
    with Image.open(preview) as im:
        assert im.size[0] > 3 * 32 and im.mode == "RGB"
    with Image.open(tmp_path / "fit.png") as im:  # the LUT's picture, beside the .cube
        assert im.format == "PNG" and im.size[0] > 4 * 32


def test_cli_writes_the_format_out_names(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LUTKERN_BACKEND", BACKEND)
    _write_pairs(tmp_path, lutkern.looks["bw"](5), n=3, size=8)
    argv = ["--inputs", str(tmp_path / "in"), "--targets", str(tmp_path / "out"), "--image-size", "8",
            "--lut-size", "5", "--steps", "5", "--val-fraction", "0"]
    assert fit.main([*argv, "--out", str(tmp_path / "fit.clf"), "--title", "a & b"]) == 0
    chain = lutkern.read_lut(tmp_path / "fit.clf")
    assert chain.title == "a & b" and chain.steps[0].lut3d.shape == (5, 5, 5, 3)
    capsys.readouterr()
    assert fit.main([*argv, "--out", str(tmp_path / "fit.lut")]) == 2
    assert "must end in one of .cube, .3dl" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--lut-size", "1"], "size"),
        (["--steps", "0"], "steps"),
        (["--threads", "0"], "--threads"),
        (["--tv-weight", "-1"], "tv"),
        (["--val-fraction", "1.5"], "validation fraction"),
        (["--val-inputs", "x"], "--val-inputs and --val-targets"),
        (["--inputs", "/nonexistent"], "no such folder"),
        (["--interpolation", "cubic"], "invalid choice"),
        (["--steps", "ten"], "invalid int"),
        (["--format", "spi1d"], "not a 3D LUT format"),
        (["--format", "clf"], "ends in .cube but --format is .clf"),
    ],
)
def test_cli_bad_arguments_are_one_line_errors(tmp_path, monkeypatch, capsys, extra, match):
    monkeypatch.setenv("LUTKERN_BACKEND", BACKEND)
    _write_pairs(tmp_path, lutkern.identity_lut(5), n=3, size=4)
    argv = ["--inputs", str(tmp_path / "in"), "--targets", str(tmp_path / "out"),
            "--out", str(tmp_path / "x.cube"), "--image-size", "4", *extra]
    try:
        rc = fit.main(argv)
    except SystemExit as exc:  # argparse's own errors exit
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "error" in err and match in err, err
    assert not (tmp_path / "x.cube").exists()


@pytest.mark.parametrize("head", ["direct", "basis"])
def test_warm_start_puts_every_prediction_at_the_lut(head):
    from img2lut.model import ResNetLUTGenerator

    look = lutkern.looks["teal_orange"](5)
    torch.manual_seed(0)
    model = ResNetLUTGenerator(5, init="identity", head=head).eval()
    model.start_at(look)
    with torch.no_grad():
        luts = model.predict_lut(torch.rand(4, 3, 16, 16))
    if head == "direct":
        # The scaled-down last weight leaves a small image-dependent part; the logit clamp costs <= 1e-3.
        torch.testing.assert_close(luts, look.expand_as(luts), atol=5e-3, rtol=0)
        with pytest.raises(ValueError, match="identity"):
            ResNetLUTGenerator(5, init="default").start_at(look)
    else:  # zero bases, identity levels: the LUT, whatever the image (read at its own lattice points)
        torch.testing.assert_close(luts, look.expand_as(luts), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="start LUT"):
        model.start_at(lutkern.looks["bw"](3))


def _train_args(tmp_path, *extra):
    return ["--inputs", str(tmp_path / "in"), "--targets", str(tmp_path / "out"), "--out", str(tmp_path),
            "--image-size", "128", "--cnn-size", "16", "--lut-size", "5",
            "--batch-size", "2", "--epochs", "1", "--val-fraction", "0.34", *extra]


@pytest.mark.parametrize("head", ["direct", "basis"])
def test_train_init_from_cube(tmp_path, monkeypatch, capsys, head):
    from img2lut.model import ResNetLUTGenerator

    monkeypatch.setenv("LUTKERN_BACKEND", BACKEND)
    _write_pairs(tmp_path, lutkern.looks["bw"](5), n=6, size=16)  # resized to 128: the loss crop fits
    look = lutkern.looks["faded_warm"](5)
    lutkern.write_cube(tmp_path / "start.cube", look)
    start = str(tmp_path / "start.cube")
    seen = {}
    real_start_at = ResNetLUTGenerator.start_at

    def spy(model, lut):  # what the CNN predicts right after the warm start, before any step
        real_start_at(model, lut)
        with torch.no_grad():
            seen["luts"] = model.eval().predict_lut(torch.rand(2, 3, 16, 16))
        model.train()

    monkeypatch.setattr(ResNetLUTGenerator, "start_at", spy)
    assert train.main(_train_args(tmp_path, "--init-from", start, "--head", head)) == 0
    torch.testing.assert_close(seen["luts"], look.expand_as(seen["luts"]), atol=5e-3, rtol=0)
    payload = torch.load(tmp_path / "models" / "pairs" / "checkpoint.pt", weights_only=True)
    if head == "direct":
        # Implied by --init-from: the identity init's scaled-down weight, and the shared LUT (the last
        # bias) learning at the network's lr instead of the preset's large bias lr.
        assert payload["config"]["init"] == "identity" and payload["config"]["bias_lr"] is None
    else:  # the basis head starts at the LUT whatever its init, and keeps the preset's table lr
        assert payload["config"]["bias_lr"] == train.TrainConfig.bias_lr
    capsys.readouterr()
    for extra, match in ((["--init-from", str(tmp_path / "missing.cube")], "--init-from"),
                         (["--init-from", start, "--init", "default", "--head", "direct"], "--init")):
        assert train.main(_train_args(tmp_path, "--experiment", "bad", *extra)) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err
