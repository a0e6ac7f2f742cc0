"""A model measured on pairs: what training's validation and ``python -m img2lut.evaluate`` share.

:func:`evaluate_model` runs a model (in eval mode) over decoded pairs; :func:`evaluate_pairs` does it for
the pairs of two folders and reports per image PSNR (dB, images in [0,1]), SSIM (pytorch-msssim,
``data_range=1``) and the mean CIEDE2000 colour difference (sRGB -> CIELAB D65, :mod:`img2lut.color`);
:func:`compare_with_truth` measures a learned LUT against the true one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .color import delta_e_2000_srgb
from .data import PairedImages, default_true_lut, pair_files, read_true_lut
from .metrics import COVERED_WEIGHT, image_ssim, lattice_coverage, lut_rmse, psnr_from_mse, ssim_value
from .model import ResNetLUTGenerator
from .pair_loading import load_pairs
from .prediction import LUTPredictor


@dataclass
class Evaluation:
    """A model on a set of pairs, in eval mode: ``mse`` over all pixels, ``image_mse`` ``(N,)`` per
    image, the ``mean_lut`` ``(S,S,S,3)`` of the predicted LUTs, ``outputs`` ``(K,3,H,W)`` (the first K
    images' outputs, all unless fewer were asked for) and, when asked for, the predicted ``luts``
    ``(N,S,S,S,3)`` and each image's SSIM ``image_ssim`` ``(N,)``."""

    mse: float
    image_mse: torch.Tensor
    mean_lut: torch.Tensor
    outputs: torch.Tensor
    luts: torch.Tensor | None = None
    lut_sum: torch.Tensor | None = None  # (S,S,S,3) float64: the sum of the predicted LUTs
    image_ssim: torch.Tensor | None = None

    @property
    def image_psnr(self) -> torch.Tensor:
        return torch.tensor([psnr_from_mse(float(m)) for m in self.image_mse])


@torch.no_grad()
def evaluate_model(model: ResNetLUTGenerator, images: PairedImages, thumbs: torch.Tensor, batch_size: int,
                   device: torch.device, keep_luts: bool = False, keep_outputs: int | None = None,
                   ssim: bool = False, stats: torch.Tensor | None = None) -> Evaluation:
    """Run ``model`` (in eval mode) on ``images``, the CNN seeing ``thumbs``, a batch at a time: memory
    holds one batch of float images, and of the outputs the first ``keep_outputs`` (None: all); ``ssim``:
    measure each image's SSIM too. ``stats``: the inputs' statistics ``(N,STATS_DIM)`` when known (None:
    the model computes them)."""
    was_training = model.training
    model.eval()
    keep = len(images) if keep_outputs is None else keep_outputs
    outputs, luts, image_mse, ssims, lut_sum = [], [], [], [], 0.0
    for start in range(0, len(images), batch_size):
        sl = slice(start, start + batch_size)
        out, lut = model(thumbs[sl].to(device), full=images.inputs[sl].to(device),
                         stats=None if stats is None else stats[sl].to(device))
        target = images.targets[sl].to(device)
        image_mse.append((out - target).double().square().mean((1, 2, 3)).cpu())
        if ssim:
            ssims.append(image_ssim(out, target).cpu())
        lut_sum = lut_sum + lut.double().sum(0)
        if start < keep:
            outputs.append(out[:keep - start].cpu())
        if keep_luts:
            luts.append(lut.float().cpu())
    model.train(was_training)
    image_mse = torch.cat(image_mse)
    return Evaluation(float(image_mse.mean()), image_mse, (lut_sum / len(images)).float().cpu(),
                      torch.cat(outputs), torch.cat(luts) if keep_luts else None, lut_sum.cpu(),
                      torch.cat(ssims) if ssim else None)


def compare_with_truth(lut: torch.Tensor, truth: torch.Tensor, coverage: torch.Tensor) -> dict:
    """RMS difference of a learned ``lut`` and the ``truth`` ``(S,S,S,3)``, over the whole lattice and over
    the points the data covers (``coverage`` ``(S,S,S)``: :func:`img2lut.metrics.lattice_coverage`), and
    the fraction covered."""
    covered = coverage >= COVERED_WEIGHT
    return {"rmse_all": lut_rmse(lut, truth), "rmse_covered": lut_rmse(lut, truth, covered),
            "covered_fraction": float(covered.float().mean())}


def evaluate_pairs(predictor: LUTPredictor, inputs: str | Path, targets: str | Path, *,
                   image_size: int | None = None, batch_size: int = 16, true_lut: str | Path | None = None,
                   progress=None, cache: Path | None = None) -> tuple[dict, Callable[[list[str]], dict]]:
    """Run the model on the pairs of two folders, as training's validation does (both images resized to
    ``image_size``, default the model's; the CNN sees its thumbnail), a batch at a time: memory holds
    the pairs' codes (memory-mapped from the pair cache in ``cache``, a folder; None: no cache) and one
    batch of float images.

    Returns ``(report, images)``: ``report`` is what ``evaluate --json`` writes (docs/predict.md);
    ``images(names)`` maps each of those names to its ``(input, target, output)`` ``(3,S,S)`` tensors and
    per-pixel CIEDE2000 ``(S,S)``. ``progress(i)`` is called after pair i is decoded. With ``true_lut``
    (default: a ``truth.cube`` beside the inputs folder) the report has the LUT error; the file is read
    before any pair is decoded, so a bad one fails at once.
    """
    size = image_size or predictor.image_size
    true_lut = true_lut or default_true_lut(inputs)
    truth = read_true_lut(true_lut, predictor.lut_size) if true_lut is not None else None
    data = load_pairs(pair_files(inputs, targets), size, progress, cache=cache)
    rows, image_mse, lut_sum = [], [], 0.0
    for start in range(0, len(data), batch_size):
        result, pairs = _batch(predictor, data, range(start, start + batch_size))
        for name, (_, tgt, out, de) in pairs:
            mse_i = float((out - tgt).square().mean())
            rows.append({"name": name, "psnr": psnr_from_mse(mse_i), "ssim": ssim_value(out[None], tgt[None]),
                         "delta_e00": float(de.mean()), "mse": mse_i})
        image_mse.append(result.image_mse)
        lut_sum = lut_sum + result.lut_sum
    mean = {key: sum(r[key] for r in rows) / len(rows) for key in ("psnr", "ssim", "delta_e00", "mse")}
    mean["psnr_of_mean_mse"] = psnr_from_mse(float(torch.cat(image_mse).mean()))
    report = {"inputs": str(inputs), "targets": str(targets), "pairs": len(rows), "image_size": size,
              "cnn_size": predictor.cnn_size, "lut_size": predictor.lut_size,
              "interpolation": predictor.interpolation, "images": rows, "mean": mean, "lut": None}
    if truth is not None:
        coverage = lattice_coverage(data.inputs, predictor.lut_size, predictor.interpolation)
        mean_lut = (lut_sum / len(data)).float()
        report["lut"] = {"truth": str(true_lut), **compare_with_truth(mean_lut, truth, coverage)}

    def images(names: list[str]) -> dict:
        where = {name: i for i, name in enumerate(data.names)}
        return dict(_batch(predictor, data, [where[n] for n in names])[1])

    return report, images


def _batch(predictor: LUTPredictor, data: PairedImages, indices) -> tuple[Evaluation, list]:
    """The pairs ``indices`` (those past the end left out) run as one batch: its evaluation and, for each
    pair, ``(name, (input, target, output, CIEDE2000 map))``."""
    indices = [i for i in indices if i < len(data)]
    part = data.subset(indices)
    xs = part.inputs.tensor()
    result = evaluate_model(predictor.model, part, predictor.cnn_input(xs), len(indices), predictor.device)
    ys = part.targets.tensor()
    return result, [(name, (xs[k], ys[k], result.outputs[k], delta_e_2000_srgb(result.outputs[k], ys[k])))
                    for k, name in enumerate(part.names)]
