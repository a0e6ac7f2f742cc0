"""What a training run writes into its folder, ``<out>/models/<experiment>/``, and the rule that keeps that
folder its own: ``checkpoint.pt`` and ``model.pt`` (through :mod:`img2lut.checkpoint`), ``metrics.csv``
and ``loss.png`` (every epoch), ``previews/epoch_NNNN.png``, and at the end ``lut.cube``, its picture
``lut.png`` (:mod:`lutkern.show`, with the lattice points the training pairs covered) and
``summary.json``. Every file is written atomically.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import torch

import lutkern
from lutkern.cli import LUT_3D_FORMATS
from lutkern.files import atomic_open, same_file
from lutkern.show import lut_picture, save_picture

from . import checkpoint as ckpt
from .config import TrainConfig, UsageError
from .evaluation import Evaluation, compare_with_truth
from .metrics import COVERED_WEIGHT, lattice_coverage, psnr_from_mse
from .model import ResNetLUTGenerator
from .plots import loss_plot, preview_grid
from .training_data import Data

RUN_FILES = (ckpt.CHECKPOINT_NAME, ckpt.MODEL_NAME, "metrics.csv", "loss.png",
             *(f"lut{fmt}" for fmt in LUT_3D_FORMATS), "lut.png", "summary.json", "previews")
# One row of metrics.csv per epoch: the training objective (with its regularizers) and MSE, the validation
# MSE over all pixels and its PSNR, the network's learning rate, seconds spent in training steps so far.
HISTORY_FIELDS = ("epoch", "train_loss", "train_mse", "val_mse", "val_psnr", "lr", "seconds")
PREVIEW_ROWS = 4


def check_run_folder(run_dir: Path, config: TrainConfig, new: bool) -> None:
    """UsageError unless the run may write its files into ``run_dir``: no input (a pair folder, the true or
    start LUT) inside it or among its files, and for a new run, no file of another run there."""
    inputs = [config.inputs, config.targets, config.val_inputs, config.val_targets, config.truth,
              config.init_from]
    folder = run_dir.resolve()
    for given in filter(None, inputs):
        path = Path(given).resolve()
        if path == folder or folder in path.parents or any(same_file(run_dir / n, given) for n in RUN_FILES):
            raise UsageError(f"refusing to write the run into {run_dir}: it holds the input {given}")
    if new and (run_dir / ckpt.CHECKPOINT_NAME).exists():
        raise UsageError(f"{run_dir} already holds a run: add --resume to continue it, "
                         "or --experiment NAME for a new one")
    if new and (found := [n for n in RUN_FILES if os.path.lexists(run_dir / n)]):
        raise UsageError(f"{run_dir} already holds {', '.join(found)} (of another run?): never overwritten; "
                         "choose another --experiment, or move them away")


def write_metrics(run_dir: Path, history: list[dict]) -> None:
    """``metrics.csv`` (one row per epoch, :data:`HISTORY_FIELDS`) and ``loss.png``."""
    with atomic_open(run_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        for row in history:
            writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])
                             for k in HISTORY_FIELDS})
    epochs = [r["epoch"] for r in history]
    loss_plot(run_dir / "loss.png", epochs, {"train loss": [r["train_loss"] for r in history],
                                             "val MSE": [r["val_mse"] for r in history]})


def write_preview(run_dir: Path, epoch: int, data: Data, outputs: torch.Tensor) -> None:
    """``previews/epoch_NNNN.png``: the first validation pairs as input | target | output."""
    n = min(PREVIEW_ROWS, len(data.val))
    preview_grid(run_dir / "previews" / f"epoch_{epoch:04d}.png",
                 [(data.val.inputs[i], data.val.targets[i], outputs[i]) for i in range(n)])


def write_results(run_dir: Path, model: ResNetLUTGenerator, config: TrainConfig, data: Data,
                  result: Evaluation, summary: dict, mean_lut: torch.Tensor | None = None) -> dict:
    """The end of a run: ``model.pt`` (``model``, the kept epoch), ``lut.cube`` (``lut.<format>`` with
    ``--format``: ``mean_lut``, default ``result``'s, the mean of the LUTs the model predicts for the
    validation images) and ``summary.json`` (``summary``, the run's facts, with the measurements of
    ``result`` added). Returns the summary as written."""
    mean_lut = result.mean_lut if mean_lut is None else mean_lut
    ckpt.save_checkpoint(run_dir / ckpt.MODEL_NAME, model=model, config=dataclasses.asdict(config))
    title = f"img2lut {config.experiment}: mean predicted LUT over {len(data.val)} validation images"
    lut_file = f"lut{config.lut_format}"
    lutkern.write_lut(run_dir / lut_file, mean_lut, title=title)
    coverage = lattice_coverage(data.train.inputs, config.lut_size, config.interpolation)
    save_picture(run_dir / "lut.png", lut_picture(mean_lut, coverage >= COVERED_WEIGHT, title=title))
    psnr = result.image_psnr
    summary = {
        **summary,
        "val_mse": result.mse,
        "val_psnr": psnr_from_mse(result.mse),
        "val_psnr_mean_image": float(psnr.mean()),
        "val_psnr_worst_image": float(psnr.min()),
        "val_worst_image": data.val.names[int(psnr.argmin())],
        "val_ssim": float(result.image_ssim.mean()),
        "model": f"{ckpt.MODEL_NAME}: the kept model alone, for img2lut.predict / evaluate / load",
        "lut_cube": f"{lut_file}: the mean of the LUTs predicted for the validation images",
    }
    if data.truth is not None:
        comparison = compare_with_truth(mean_lut, data.truth, coverage)
        summary.update({"truth": data.truth_path, **{f"lut_{k}" if k.startswith("rmse") else k: v
                                                      for k, v in comparison.items()}})
    if data.val_truths is not None:
        summary.update(_per_image_truth(result, data, config.interpolation))
    with atomic_open(run_dir / "summary.json", "w") as f:
        f.write(json.dumps(summary, indent=2) + "\n")
    return summary


def _per_image_truth(result: Evaluation, data: Data, interpolation: str) -> dict:
    """How far the kept model is from the true per-image LUTs (the ceiling of an adaptive grade)."""
    truth_out = lutkern.apply_lut(data.val.inputs.tensor(), data.val_truths, interpolation=interpolation)
    ceiling = torch.tensor([psnr_from_mse(float(m)) for m in
                            (truth_out - data.val.targets.tensor()).double().square().mean((1, 2, 3))])
    lut_error = (result.luts - data.val_truths).square().mean((1, 2, 3, 4)).sqrt().mean()
    return {"true_luts_psnr_mean_image": float(ceiling.mean()),
            "true_luts_psnr_worst_image": float(ceiling.min()),
            "lut_rmse_per_image": float(lut_error)}
