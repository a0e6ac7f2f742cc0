"""python -m img2lut.evaluate on a tiny trained model: metrics against independent implementations
(numpy PSNR, scikit-image SSIM, colour-science CIEDE2000), agreement with training's own validation
numbers, the LUT error, the grid, and one-line errors."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import lutkern
from img2lut import checkpoint
from img2lut.data import resize
from img2lut.evaluate import grid_names, main
from img2lut.plots import ERROR_MAP_MAX, error_map
from img2lut.train import main as train_main

colour = pytest.importorskip("colour")
skimage_metrics = pytest.importorskip("skimage.metrics")

LUT = 5
SIZE = 32


pytestmark = pytest.mark.usefixtures("fast_small_tensors")


@pytest.fixture(scope="module")
def run(tmp_path_factory, write_patch_pairs):
    """A model trained for two epochs on 8 pairs graded by the bw look; 3 validation pairs beside
    truth.cube. Returns (root, run directory)."""
    root = tmp_path_factory.mktemp("eval")
    truth = lutkern.looks["bw"](size=LUT)
    gen = torch.Generator().manual_seed(0)
    write_patch_pairs(root / "train", [f"t{i}" for i in range(8)], truth, gen)
    write_patch_pairs(root / "val", ["v0", "v1", "v2"], truth, gen)
    lutkern.write_cube(root / "val" / "truth.cube", truth)
    args = ["--inputs", str(root / "train" / "inputs"), "--targets", str(root / "train" / "targets"),
            "--val-inputs", str(root / "val" / "inputs"), "--val-targets", str(root / "val" / "targets"),
            "--true-lut", str(root / "val" / "truth.cube"), "--out", str(root / "runs"),
            "--image-size", str(SIZE), "--cnn-size", "16", "--lut-size", str(LUT),
            "--batch-size", "4", "--epochs", "2", "--lr", "1e-3", "--experiment", "tiny",
            "--preset", "seed"]  # the seed preset's loss sees whole images; the flags above override the rest
    assert train_main(args) == 0
    return root, root / "runs" / "models" / "tiny"


def _evaluate(run, tmp_path, *extra):
    root, run_dir = run
    out = tmp_path / "report.json"
    code = main([str(run_dir / "checkpoint.pt"), "--inputs", str(root / "val" / "inputs"),
                 "--targets", str(root / "val" / "targets"), "--json", str(out), "--device", "cpu", *extra])
    assert code == 0
    return json.loads(out.read_text())


def test_means_equal_training_validation(run, tmp_path, capsys):
    report = _evaluate(run, tmp_path)
    outputs = _independent_outputs(run)
    # The validation images are the same size: the MSE over all pixels is the mean of the images' MSE.
    mse = np.mean([np.mean((out - tgt) ** 2) for out, tgt, _, _ in outputs.values()])
    assert report["mean"]["psnr_of_mean_mse"] == pytest.approx(10 * math.log10(1 / mse), abs=1e-4)
    summary = json.loads((run[1] / "summary.json").read_text())
    assert report["pairs"] == 3 and [r["name"] for r in report["images"]] == ["v0", "v1", "v2"]
    assert (report["image_size"], report["cnn_size"], report["lut_size"]) == (SIZE, 16, LUT)
    # Training's val_psnr is the PSNR of the MSE over all validation pixels; its SSIM the mean over images.
    assert report["mean"]["psnr_of_mean_mse"] == pytest.approx(summary["val_psnr"], abs=1e-6)
    assert report["mean"]["ssim"] == pytest.approx(summary["val_ssim"], abs=1e-6)
    # truth.cube beside the inputs folder is found without --true-lut; the mean LUT is training's too.
    assert report["lut"]["truth"].endswith("truth.cube")
    assert report["lut"]["rmse_all"] == pytest.approx(summary["lut_rmse_all"], rel=1e-6)
    table = capsys.readouterr().out
    assert all(name in table for name in ("v0", "v1", "v2", "mean", "LUT RMSE"))


def _independent_outputs(run):
    """The model's outputs for the validation pairs, computed here from the files and the checkpoint."""
    root, run_dir = run
    model = checkpoint.model_from_checkpoint(checkpoint.load_checkpoint(run_dir / "checkpoint.pt"))
    result = {}
    for name in ("v0", "v1", "v2"):
        x, y = (torch.from_numpy(np.asarray(Image.open(root / "val" / sub / f"{name}.png"), np.float32) / 255)
                .permute(2, 0, 1) for sub in ("inputs", "targets"))
        with torch.no_grad():
            out, lut = model(resize(x, 16).unsqueeze(0), full=x.unsqueeze(0))  # 32x32 files: no resize
        hwc = (out[0].double().numpy().transpose(1, 2, 0), y.double().numpy().transpose(1, 2, 0))
        result[name] = (*hwc, lut[0], x.double().numpy().transpose(1, 2, 0))
    return result


def test_per_image_metrics_against_independent_implementations(run, tmp_path):
    report = _evaluate(run, tmp_path)
    outputs = _independent_outputs(run)
    psnrs = []
    for row in report["images"]:
        out, tgt, _, _ = outputs[row["name"]]
        mse = float(np.mean((out - tgt) ** 2))
        psnrs.append(10 * math.log10(1 / mse))
        assert row["psnr"] == pytest.approx(psnrs[-1], abs=1e-4)
        # pytorch-msssim: 11-tap Gaussian window, sigma 1.5, valid region, population covariances.
        ssim = skimage_metrics.structural_similarity(out, tgt, data_range=1.0, channel_axis=-1,
                                                     gaussian_weights=True, sigma=1.5,
                                                     use_sample_covariance=False)
        assert row["ssim"] == pytest.approx(ssim, abs=1e-4)
        lab_out = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(out))
        lab_tgt = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(tgt))
        de = colour.difference.delta_E_CIE2000(lab_out, lab_tgt).mean()
        assert row["delta_e00"] == pytest.approx(de, abs=1e-3)
    mean = report["mean"]
    assert mean["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-4)
    assert mean["delta_e00"] > 0.1  # two epochs do not learn the look: the numbers are not trivially 0


def test_explicit_true_lut_and_grid(run, tmp_path):
    # An affine grade m @ rgb + c, in a file of another size: resampled to the model's lattice by trilinear
    # interpolation, which reproduces an affine map exactly, so the truth at the model's points is known.
    m = torch.tensor([[0.8, 0.1, 0.05], [0.1, 0.7, 0.1], [0.05, 0.2, 0.6]])
    c = torch.tensor([0.02, 0.05, 0.1])
    other = tmp_path / "other.cube"
    lutkern.write_cube(other, lutkern.identity_lut(LUT + 2) @ m.T + c)
    grid = tmp_path / "grid.png"
    report = _evaluate(run, tmp_path, "--true-lut", str(other), "--grid", str(grid))
    outputs = _independent_outputs(run)
    mean_lut = torch.stack([lut for _, _, lut, _ in outputs.values()]).mean(0)
    ramp = torch.linspace(0, 1, LUT)
    b, g, r = torch.meshgrid(ramp, ramp, ramp, indexing="ij")
    truth = torch.stack([r, g, b], dim=-1) @ m.T + c
    expected = float((mean_lut - truth).square().mean().sqrt())
    assert report["lut"]["truth"] == str(other)
    assert report["lut"]["rmse_all"] == pytest.approx(expected, rel=1e-4)
    # Covered: lattice points [b, g, r] with at least one pixel's worth of trilinear weight, the product
    # of the hat functions max(0, 1 - |x (LUT-1) - i|) of the three channels, summed over the pixels.
    weight = np.zeros((LUT, LUT, LUT))
    for *_, x in outputs.values():
        t = np.clip(x.reshape(-1, 3), 0, 1) * (LUT - 1)  # (P, 3): r, g, b
        hat = np.maximum(0, 1 - np.abs(t[:, :, None] - np.arange(LUT)))  # (P, 3, LUT)
        weight += np.einsum("pb,pg,pr->bgr", hat[:, 2], hat[:, 1], hat[:, 0])
    covered = torch.from_numpy(weight >= 1)
    assert report["lut"]["covered_fraction"] == pytest.approx(float(covered.float().mean()))
    expected = float((mean_lut - truth)[covered].square().mean().sqrt())
    assert report["lut"]["rmse_covered"] == pytest.approx(expected, rel=1e-4)
    ranked = sorted(report["images"], key=lambda r: -r["psnr"])
    assert report["grid"]["rows"] == [r["name"] for r in ranked]
    with Image.open(grid) as im:
        # 4 columns (input | target | output | error) of 32 px and 3 rows, plus padding and a header.
        assert 4 * SIZE < im.size[0] < 4 * SIZE + 20 and 3 * SIZE < im.size[1] < 3 * SIZE + 30


def test_grid_names_best_then_worst():
    rows = [{"name": f"n{i}", "psnr": float(p)} for i, p in enumerate([30, 10, 50, 20, 40, 60, 25, 5])]
    assert grid_names(rows, per_end=2) == ["n5", "n2", "n1", "n7"]
    assert grid_names(rows[:3], per_end=2) == ["n2", "n0", "n1"]


def test_error_map_colours():
    de = torch.tensor([[0.0, ERROR_MAP_MAX / 3, 2 * ERROR_MAP_MAX / 3, ERROR_MAP_MAX, 5 * ERROR_MAP_MAX]])
    rgb = error_map(de)
    expected = torch.tensor([[0, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 1, 1]], dtype=torch.float32)
    torch.testing.assert_close(rgb[:, 0], expected)


def test_one_line_errors(run, tmp_path, capsys):
    root, run_dir = run
    ckpt = str(run_dir / "checkpoint.pt")
    (tmp_path / "only").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "only" / "lonely.png")
    cases = [
        ([ckpt, "--inputs", str(tmp_path / "only"), "--targets", str(root / "val" / "targets")], "unmatched"),
        ([ckpt, "--inputs", str(tmp_path / "nowhere"), "--targets", str(root / "val" / "targets")],
         "no such folder"),
        ([str(root / "val" / "truth.cube"), "--inputs", str(root / "val" / "inputs"), "--targets",
          str(root / "val" / "targets")], "not an img2lut checkpoint"),
        ([ckpt, "--inputs", str(root / "val" / "inputs"), "--targets", str(root / "val" / "targets"),
          "--true-lut", str(run_dir / "metrics.csv")], "metrics.csv"),
    ]
    for argv, reason in cases:
        assert main([*argv, "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and reason in err and "Traceback" not in err, err
