"""The training loop: :class:`Trainer` runs (or continues) a run of :class:`~img2lut.config.TrainConfig` on
:class:`~img2lut.training_data.Data` and writes its artifacts (:mod:`img2lut.artifacts`).

The default recipe (docs/generalization.md): the pairs are diagnosed first (:mod:`img2lut.diagnosis`:
one look, or an image-adaptive grade, and which automatic correction of each input explains them best).
One look: the model is one LUT fitted directly to all pairs (:func:`img2lut.fitting.fit_lut`, seconds),
after the correction if one was found; no CNN is trained. Adaptive: the LUT is fitted to the training
pairs, the basis-LUT head starts at it (its levels curves at the correction) and learns only what
differs from photo to photo, with the same regularizers as the fit; the epoch that did best on the
held-out photos (epoch 0 is the fitted LUT alone) is the model kept, and where that is epoch 0 the LUT is
refitted on all pairs. Each step: a batch of pairs, the CNN sees
their thumbnails (flipped and turned at random), the predicted LUTs are applied to every ``loss_stride``-th
pixel of the full images, the loss is their MSE plus the regularizers (:func:`img2lut.losses.total_loss`).

Ctrl-C stops after the current step and saves a checkpoint from which ``--resume`` continues exactly (the
data order of an epoch is a function of (seed, epoch); generators, optimizer and scheduler are saved).
Under torchrun every rank trains on its share of each epoch and validates on the whole validation set;
only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from . import checkpoint as ckpt
from . import distributed, pack_results
from .artifacts import HISTORY_FIELDS, PREVIEW_ROWS, write_metrics, write_preview, write_results
from .codes import BATCH, Codes
from .config import TrainConfig, model_arguments
from .data import group_names, read_true_lut
from .diagnosis import DIAGNOSIS_PAIRS, Diagnosis, diagnose
from .evaluation import Evaluation, evaluate_model
from .fitting import fit_lut
from .grades import EXPOSURE_STOPS, WB_LOG2_GAIN
from .image_stats import NORMALISERS, image_stats, levels_curve
from .losses import LossWeights, total_loss
from .metrics import psnr_from_mse
from .model import ResNetLUTGenerator
from .readout import Readout, fit_readout
from .training_data import Data

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# Exit status after Ctrl-C, as a shell reports a process stopped by SIGINT.
INTERRUPTED = 130
_STATE_FIELDS = ("epoch", "step", "loss_sum", "mse_sum", "seconds", "history", "best", "diagnosis", "readout")
_OPTIONAL_STATE = ("best", "diagnosis", "readout")


def resolve_recipe(config: TrainConfig, data: Data, console: Console) -> tuple[TrainConfig, dict | None]:
    """``config`` with ``recipe`` and ``normalise`` decided (:func:`img2lut.diagnosis.diagnose` on the
    training pairs where either is ``auto``; an explicit flag wins) and the diagnosis (None if none ran).
    The diagnosis of pairs from the pair cache is kept beside their pack (:mod:`img2lut.pack_results`)."""
    if config.recipe != "auto" and config.normalise != "auto":
        return config, None
    given = None if config.normalise == "auto" else config.normalise
    n = len(data.train)
    sample = torch.linspace(0, n - 1, min(n, DIAGNOSIS_PAIRS)).round().long().unique()  # evenly spread
    inputs, targets = data.train.inputs.subset(sample), data.train.targets.subset(sample)
    settings = {"normalise": given, "seed": config.seed, **pack_results.environment(config.backend)}
    fields, _ = pack_results.whole_set([inputs, targets], "diagnosis", settings, lambda: (dataclasses.asdict(
        diagnose(inputs, targets, normalise=given, seed=config.seed, backend=config.backend)), {}))
    found = Diagnosis(**fields)
    console.print(found.describe())
    recipe = found.recipe if config.recipe == "auto" else config.recipe
    return dataclasses.replace(config, recipe=recipe, normalise=found.normalise), found.to_dict()


def batch_stats(images: torch.Tensor | Codes) -> torch.Tensor:
    """``(N,STATS_DIM)`` :func:`img2lut.image_stats.image_stats` of ``images`` ``(N,3,H,W)`` (a tensor, or
    codes made float a batch at a time; those of a pack are kept beside it)."""
    def compute(images):
        return torch.cat([image_stats(images[i:i + BATCH]) for i in range(0, len(images), BATCH)])
    if isinstance(images, Codes):
        return pack_results.per_image(images, "stats", pack_results.environment(), compute)
    return compute(images)


class CorrectedCodes(Codes):
    """``codes`` through the correction ``name`` read off each image's ``stats`` ``(N,STATS_DIM)``, quantised
    to 16-bit codes, computed as they are read (a batch, or the pixels a fit draws): the corrected set is
    never held whole."""

    def __init__(self, codes: Codes, name: str, stats: torch.Tensor):
        super().__init__(codes.array, codes.scales, codes.index, codes.origin)
        self.params = np.zeros((len(codes.array), 3, 3), dtype=np.float32)  # lo, hi, gamma of each row
        self.params[codes.index] = torch.stack(NORMALISERS[name](stats), 1).numpy()

    def _float(self, codes: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        lo, hi, gamma = torch.from_numpy(self.params[rows]).unbind(1)
        return (levels_curve(super()._float(codes, rows), lo, hi, gamma) * 65535).round() / 65535


def joined(a: torch.Tensor | Codes, b: torch.Tensor | Codes) -> torch.Tensor | Codes:
    """The images of ``a`` then those of ``b``, held as they are (codes stay codes; subsets of one array,
    as the training and validation pairs split from one folder are, share it: nothing is copied)."""
    if isinstance(a, Codes) and isinstance(b, Codes):
        if a.array is b.array and a.scales is b.scales:
            return Codes(a.array, a.scales, np.concatenate([a.index, b.index]), a.origin)
        return Codes(np.concatenate([a.array[a.index], b.array[b.index]]),
                     np.concatenate([a.scales[a.index], b.scales[b.index]]))
    return torch.cat([a[:], b[:]])


def fit_corrected(config: TrainConfig, inputs: torch.Tensor | Codes, targets: torch.Tensor | Codes,
                  console: Console) -> torch.Tensor:
    """One LUT ``(S,S,S,3)`` fitted to ``inputs`` (through the run's correction) and ``targets``; for pairs
    of the pair cache, kept beside their pack (:mod:`img2lut.pack_results`)."""
    # Small sets need fewer pixels per step than fit_lut's default sample: never more than they hold.
    pixels = min(len(inputs) * inputs.shape[2:].numel(), 1 << 16)
    settings = {"normalise": config.normalise, "lut_size": config.lut_size, "seed": config.seed,
                "interpolation": config.interpolation, "batch_pixels": pixels,
                **pack_results.environment(config.backend)}

    def fit() -> tuple[None, dict]:
        fixed = inputs
        if config.normalise != "none":
            codes = inputs if isinstance(inputs, Codes) else Codes(inputs.cpu().numpy(), np.ones(len(inputs)))
            fixed = CorrectedCodes(codes, config.normalise, batch_stats(codes))
        lut = fit_lut(fixed, targets, lut_size=config.lut_size, interpolation=config.interpolation,
                      seed=config.seed, batch_pixels=pixels, backend=config.backend,
                      progress=console.is_terminal, coverage=False).lut
        return None, {"lut": lut.numpy()}

    return torch.from_numpy(pack_results.whole_set([inputs, targets], "first_stage", settings, fit)[1]["lut"]
                            .copy())


def start_lut(config: TrainConfig, data: Data, console: Console) -> torch.Tensor | None:
    """The LUT ``(S,S,S,3)`` a new run starts at: ``--init-from``'s, else (``--fit-first``) one fitted to
    the training pairs (after the run's correction), else None (the model's own init)."""
    if config.init_from is not None:
        return read_true_lut(config.init_from, config.lut_size)
    if not config.fit_first:
        return None
    lut = fit_corrected(config, data.train.inputs, data.train.targets, console)
    console.print(f"first stage: one LUT fitted to the {len(data.train)} training pairs"
                  + ("" if config.recipe == "one_look" else "; the CNN starts there"))
    return lut


def photometric_gains(count: int, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """``(count,3,1,1)`` per-channel gains (in display values) of a further exposure and white-balance
    error, drawn as :func:`img2lut.grades.mis_shoot` draws them, for a ``fraction`` of the images (1 for
    the others)."""
    draws = torch.rand(count, 4, generator=gen)
    stops = EXPOSURE_STOPS[0] + (EXPOSURE_STOPS[1] - EXPOSURE_STOPS[0]) * draws[:, 0]
    wb = WB_LOG2_GAIN[0] + (WB_LOG2_GAIN[1] - WB_LOG2_GAIN[0]) * draws[:, 1:3]
    log2 = torch.stack([stops + wb[:, 0], stops, stops + wb[:, 1]], 1) / 2.2  # linear light -> display
    gains = torch.where((draws[:, 3] < fraction).unsqueeze(1), 2**log2, torch.ones_like(log2))
    return gains.view(count, 3, 1, 1)


def make_optimizer(model: ResNetLUTGenerator, config: TrainConfig, device: torch.device):
    """Adam (with a learning rate of its own for the LUT tables) and the run's scheduler."""
    # Adam moves a parameter by about lr per step whatever its gradient's size, and a LUT entry's
    # gradient is sparse (only pixels near it): the LUT tables (the shared LUT, the basis LUTs) may need
    # a larger lr than the network.
    tables = [model.shared_lut()] + ([model.basis] if model.head != "direct" else [])
    ids = {id(t) for t in tables}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids]},
              {"params": tables, "lr": config.bias_lr or config.lr}]
    # The fused Adam is ~7x faster on CPU for the direct head's 55M-parameter last layer, same update rule.
    opt = torch.optim.Adam(groups, lr=config.lr, fused=device.type in ("cpu", "cuda"))
    if config.scheduler == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=config.plateau_factor, patience=config.plateau_patience)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    return opt, sched


def channels_last_for(config: TrainConfig, device: torch.device) -> bool:
    """``--channels-last``, or when not given: on for the CPU, where it measured faster (docs/scaling.md),
    off for CUDA, where it is not measured yet."""
    return device.type == "cpu" if config.channels_last is None else config.channels_last


def dihedral(images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """``images`` ``(B,3,h,h)`` each turned by ``codes[i] % 4`` quarter turns, then mirrored if
    ``codes[i] >= 4`` (the 8 symmetries of a square)."""
    out = images.clone()
    for code in codes.unique().tolist():
        sel = codes == code
        turned = images[sel].rot90(code % 4, dims=(2, 3))
        out[sel] = turned.flip(3) if code >= 4 else turned
    return out


class StopFlag:
    """SIGINT sets a flag the loop checks between steps (a half-done optimizer step is never saved);
    a second Ctrl-C interrupts immediately."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._previous)


class NonFiniteLoss(ValueError):
    """Training met a loss that is not finite; it stopped without stepping or saving."""


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Trainer:
    """One run: builds the model (at the start LUT, or from a checkpoint's ``payload``), the optimizer and
    the data order, then :meth:`run` trains it. ``ctx``: this process's rank
    (:func:`img2lut.distributed.setup`); None = a single process."""

    def __init__(self, config: TrainConfig, data: Data, run_dir, console: Console,
                 payload: dict | None = None, ctx: distributed.Dist | None = None):
        self.config, self.data, self.run_dir, self.console = config, data, run_dir, console
        self.ctx = ctx or distributed.Dist(device=torch.device(config.device))
        self.device = self.ctx.device
        diagnosis = None
        if payload is None:
            config, diagnosis = resolve_recipe(config, data, console)
            self.config = config
        torch.manual_seed(config.seed)
        model = ResNetLUTGenerator(**model_arguments(config))
        model.backend = config.backend
        # What the head reads of each training image (its full-size statistics), computed once.
        self.train_stats = batch_stats(data.train.inputs)
        self.val_stats = batch_stats(data.val.inputs) if config.head != "direct" else None
        readout = None
        if payload is None and (start := start_lut(config, data, console)) is not None:
            model.start_at(start)
            readout = self._read_statistics(model, data.train.names, data.train.inputs, data.train.targets,
                                            self.train_stats)
        layout = torch.channels_last if channels_last_for(config, self.device) else torch.preserve_format
        self.model = model.to(self.device, memory_format=layout)
        self.opt, self.sched = make_optimizer(self.model, config, self.device)
        # This rank's share of each epoch, shuffled by (seed, epoch) alone, so a resumed epoch replays its
        # order. The loss subsample offsets (aug) are the same on every rank: rank 0's saved state serves all.
        self.sampler = distributed.make_sampler(self.ctx, len(data.train), config.seed)
        self.aug = torch.Generator()
        self.aug.manual_seed(config.seed + 1)
        self.amp = AMP_DTYPES[config.amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        # Progress: `epoch` is the epoch in progress, `step` the steps of it already done.
        # `best`: the epoch with the best mean validation PSNR so far and its weights (--select-best).
        self.state = {"epoch": 0, "step": 0, "loss_sum": 0.0, "mse_sum": 0.0, "seconds": 0.0, "history": [],
                      "best": None, "diagnosis": diagnosis, "readout": readout}
        normalising = config.recipe == "adaptive" and config.normalise != "none"
        self.photometric = config.photometric if normalising else 0.0
        if payload is not None:
            self._restore(payload)
        # `net` runs the steps (DDP-wrapped under torchrun, compiled with --compile); `model` is evaluated
        # and saved, so checkpoints never carry a `module.` or `_orig_mod.` prefix.
        self.net = distributed.wrap(self.model, self.ctx, config.sync_bn)
        if config.compile:
            self.net = torch.compile(self.net)
        self.weights = LossWeights(config.ssim_weight, config.smooth_weight, config.tv_weight,
                                   config.mono_weight, backend=config.backend)
        self.steps_per_epoch = math.ceil(len(self.sampler) / config.batch_size)
        self.ckpt_path = run_dir / ckpt.CHECKPOINT_NAME

    def _read_statistics(self, model: ResNetLUTGenerator, names: list[str], inputs, targets,
                         stats: torch.Tensor, choice: dict | None = None) -> dict | None:
        """The adaptive recipe's readout (:func:`img2lut.readout.fit_readout`) after the fitted LUT, where
        the head reads statistics and ``--readout`` is on; what it chose (None: none ran). ``choice``: a
        readout chosen before, refitted as it is."""
        config = self.config
        if not (config.readout and config.recipe == "adaptive" and config.head != "direct"
                and config.init_from is None):
            return None
        losses = LossWeights(0.0, config.smooth_weight, config.tv_weight, config.mono_weight,
                             backend=config.backend)
        found = fit_readout(model, inputs, targets, stats, group_names(names, config.group_by).groups,
                            losses, seed=config.seed, console=self.console,
                            choice=None if choice is None else Readout(**choice))
        if found is None:
            self.console.print("first stage: one photograph only, no readout of the statistics")
            return None
        refitted = f"first stage: its readout ({found.components} weight(s)) refitted to {found.pairs} pairs"
        self.console.print(found.describe() if choice is None else refitted)
        return dataclasses.asdict(found)

    # ------------------------------------------------------------------------------------------ resume

    def _restore(self, payload: dict) -> None:
        """Continue from a checkpoint: the weights, then the training state, every part checked first."""
        self.model.load_state_dict(payload["model"])
        try:
            self.state = self._checked_state(payload["state"])
            if self.state["best"] is not None:
                ckpt.check_weights(payload, self.state["best"]["model"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            raise ckpt.CheckpointError(f"{self.run_dir / ckpt.CHECKPOINT_NAME}: the training state is "
                                       f"damaged, cannot resume ({type(exc).__name__}: {exc})") from None

    def _checked_state(self, saved: dict) -> dict:
        """Load ``saved`` into the optimizer, scheduler, loss scaler and generators; return the loop's
        progress. A damaged part is an error here, never a crash (a wrong-sized Adam moment makes the fused
        step write out of bounds) or a silently different run."""
        if set(saved["scheduler"]) != set(self.sched.state_dict()):
            raise ValueError(f"scheduler state {sorted(saved['scheduler'])} is not a {self.config.scheduler} "
                             "scheduler's")
        if not isinstance(saved["scaler"], dict):
            raise ValueError(f"loss scaler state {saved['scaler']!r:.60}")
        self.opt.load_state_dict(saved["optimizer"])
        for group in self.opt.param_groups:
            for param in group["params"]:
                for key, value in self.opt.state.get(param, {}).items():
                    if key != "step" and (not isinstance(value, torch.Tensor) or value.shape != param.shape):
                        raise ValueError(f"optimizer {key} of shape {getattr(value, 'shape', value)} for a "
                                         f"parameter of shape {tuple(param.shape)}")
        self.sched.load_state_dict(saved["scheduler"])
        if self.config.scheduler == "cosine":
            self.sched.T_max = self.config.epochs
        torch.set_rng_state(saved["rng"]["torch"])
        self.aug.set_state(saved["rng"]["aug"])
        if saved["scaler"]:
            self.scaler.load_state_dict(saved["scaler"])
        state = {k: saved.get(k) if k in _OPTIONAL_STATE else saved[k] for k in _STATE_FIELDS}
        if not all(isinstance(state[k], int) and state[k] >= 0 for k in ("epoch", "step")):
            raise ValueError(f"epoch {state['epoch']!r}, step {state['step']!r}")
        sums = [state[k] for k in ("loss_sum", "mse_sum", "seconds")]
        if not all(_number(v) and math.isfinite(v) for v in sums):
            raise ValueError(f"loss sums and time {sums!r:.80}")
        history = state["history"]
        rows_ok = all(isinstance(row, dict) and all(_number(row.get(k)) for k in HISTORY_FIELDS)
                      for row in history) if isinstance(history, list) else False
        if not rows_ok:
            raise ValueError(f"metric history {history!r:.80}")
        best = state["best"]
        if best is not None and not (isinstance(best, dict) and isinstance(best.get("epoch"), int)
                                     and isinstance(best.get("psnr"), float) and "model" in best):
            raise ValueError(f"the kept epoch's record is {type(best).__name__} {best!r:.80}")
        if state["diagnosis"] is not None and not isinstance(state["diagnosis"], dict):
            raise ValueError(f"the diagnosis is {type(state['diagnosis']).__name__}")
        fields = {f.name for f in dataclasses.fields(Readout)}
        if state["readout"] is not None and not (isinstance(state["readout"], dict)
                                                 and set(state["readout"]) == fields):
            raise ValueError(f"the readout's record is {state['readout']!r:.80}")
        return state

    # -------------------------------------------------------------------------------------------- loop

    def run(self) -> int:
        """Train to ``config.epochs``; returns the exit status (0, or :data:`INTERRUPTED` after Ctrl-C).
        Raises :class:`NonFiniteLoss` at the first non-finite loss."""
        state = self.state
        if self.config.recipe == "one_look":  # the fitted LUT is the model: nothing to train
            if self.ctx.is_main:
                self._finish()
            return 0
        if state["epoch"] == 0 and state["step"] == 0 and self.config.select_best:
            self._consider(0, self._evaluate())
        self.model.train()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}  val PSNR {task.fields[psnr]}"),
                   TimeRemainingColumn())
        last = state["history"][-1] if state["history"] else None
        done = state["epoch"] * self.steps_per_epoch + state["step"]
        with StopFlag() as stop, Progress(*columns, console=self.console) as progress:
            task = progress.add_task("training", total=self.config.epochs * self.steps_per_epoch,
                                     completed=done, loss="-",
                                     psnr=f"{last['val_psnr']:.2f} dB" if last else "-")
            while state["epoch"] < self.config.epochs:
                tick = time.perf_counter()
                stopped = self._train_epoch(stop, lambda loss: progress.update(task, advance=1, loss=loss))
                state["seconds"] += time.perf_counter() - tick
                if stopped:
                    self._stop()
                    return INTERRUPTED
                psnr = self._end_epoch()
                progress.update(task, psnr=f"{psnr:.2f} dB")
        if self.ctx.is_main:
            self._finish()
        return 0

    def _train_epoch(self, stop: StopFlag, advance) -> bool:
        """The remaining steps of the epoch in progress; True when Ctrl-C stopped it."""
        state, config = self.state, self.config
        self.sampler.set_epoch(state["epoch"])
        perm = torch.tensor(list(self.sampler))
        for step in range(state["step"], self.steps_per_epoch):
            value, mse = self._step(perm[step * config.batch_size:(step + 1) * config.batch_size], step)
            state["loss_sum"] += value
            state["mse_sum"] += mse
            state["step"] = step + 1
            advance(f"{value:.2e}")
            if distributed.any_rank(self.ctx, stop.requested):  # all ranks stop at the same step
                return True
        return False

    def _step(self, idx: torch.Tensor, step: int) -> tuple[float, float]:
        """One optimizer step on the pairs ``idx``; returns the loss and its MSE part."""
        config, data, device = self.config, self.data, self.device
        x, y = data.train.inputs[idx], data.train.targets[idx]
        thumbs, stats = data.train_thumbs[idx], self.train_stats[idx]
        if self.photometric:  # the same target under another exposure / white balance
            gains = photometric_gains(config.batch_size, self.photometric, self.aug)[:len(idx)]
            x, thumbs = (x * gains).clamp(0, 1), (thumbs * gains).clamp(0, 1)
            stats = image_stats(x)
        stride = config.loss_stride
        if stride > 1:
            dy, dx = torch.randint(0, stride, (2,), generator=self.aug).tolist()
            x, y = x[..., dy::stride, dx::stride], y[..., dy::stride, dx::stride]
        if config.augment:  # a fixed count per step keeps the ranks' generators in step
            codes = torch.randint(0, 8, (config.batch_size,), generator=self.aug)
            thumbs = dihedral(thumbs, codes[:len(idx)])
        # Under autocast the LUT comes out in bf16/fp16, which the LUT kernels take with fp32 images.
        with torch.autocast(device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            out, lut = self.net(thumbs.to(device), full=x.to(device), stats=stats.to(device))
            loss, parts = total_loss(out, y.to(device), lut, self.weights)
        value = float(loss.detach())
        if distributed.any_rank(self.ctx, not math.isfinite(value)):  # never step on, or save, a NaN
            kept = f"kept the checkpoint {self.ckpt_path}" if self.ckpt_path.exists() else "no checkpoint yet"
            raise NonFiniteLoss(f"the loss is not finite ({value}) at epoch {self.state['epoch'] + 1}, "
                                f"step {step + 1}; stopped, {kept}")
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return value, parts["mse"]

    def _end_epoch(self) -> float:
        """Validate, step the scheduler, record the epoch, write metrics, previews and the checkpoint when
        due; returns the validation PSNR."""
        state, config = self.state, self.config
        epoch = state["epoch"] + 1
        n = self.steps_per_epoch
        train_loss, train_mse = distributed.all_reduce_mean(
            self.ctx, [state["loss_sum"] / n, state["mse_sum"] / n])
        result = self._evaluate()
        self._consider(epoch, result)
        lr = self.opt.param_groups[0]["lr"]
        if config.scheduler == "plateau":
            self.sched.step(train_loss)
        else:
            self.sched.step()
        psnr = psnr_from_mse(result.mse)
        state["history"].append({"epoch": epoch, "train_loss": train_loss, "train_mse": train_mse,
                                 "val_mse": result.mse, "val_psnr": psnr, "lr": lr,
                                 "seconds": state["seconds"]})
        state.update(epoch=epoch, step=0, loss_sum=0.0, mse_sum=0.0)
        if self.ctx.is_main:
            write_metrics(self.run_dir, state["history"])
            if epoch % config.preview_every == 0 or epoch == config.epochs:
                write_preview(self.run_dir, epoch, self.data, result.outputs)
        if epoch % config.checkpoint_every == 0 or epoch == config.epochs:
            self._save()
        self.console.log(f"epoch {epoch}/{config.epochs}  train loss {train_loss:.3e}  "
                         f"val PSNR {psnr:.2f} dB  lr {lr:.2e}  {state['seconds']:.0f} s")
        return psnr

    def _evaluate(self, keep_luts: bool = False, ssim: bool = False) -> Evaluation:
        """The model on the validation pairs; of its outputs, those the previews show are kept."""
        return evaluate_model(self.model, self.data.val, self.data.val_thumbs, self.config.batch_size,
                              self.device, keep_luts, keep_outputs=PREVIEW_ROWS, ssim=ssim,
                              stats=self.val_stats)

    def _consider(self, epoch: int, result: Evaluation) -> None:
        """Keep ``epoch``'s weights when they do best so far on the validation photos (--select-best)."""
        score = float(result.image_psnr.mean())
        best = self.state["best"]
        if self.config.select_best and (best is None or score > best["psnr"]):
            weights = {k: v.detach().clone().cpu() for k, v in self.model.state_dict().items()}
            self.state["best"] = {"epoch": epoch, "psnr": score, "model": weights}

    # ------------------------------------------------------------------------------------------ outputs

    def _save(self) -> None:
        if not self.ctx.is_main:
            return
        full = {**self.state, "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": {"torch": torch.get_rng_state(),
                                                            "aug": self.aug.get_state()}}
        ckpt.save_checkpoint(self.ckpt_path, model=self.model, config=dataclasses.asdict(self.config),
                             state=full)

    def _stop(self) -> None:
        """After Ctrl-C: save the ranks' mean partial sums (every rank resumes from them, and the epoch's
        mean stays exact) in a checkpoint, and say how to continue."""
        state = self.state
        state["loss_sum"], state["mse_sum"] = distributed.all_reduce_mean(
            self.ctx, [state["loss_sum"], state["mse_sum"]])
        self._save()
        self.console.print(f"stopped at epoch {state['epoch'] + 1}, step {state['step']}; saved "
                           f"{self.ckpt_path}; continue with: python -m img2lut.train --resume "
                           f"{self.ckpt_path}")

    def _refit_all(self, kept: int) -> int | None:
        """Where the first stage is the model kept (epoch 0 of a run that started at a fit: the fitted LUT,
        and its readout of the statistics where one ran), refit it to all pairs, training and validation
        (``--refit-all``); returns how many, or None."""
        config, data = self.config, self.data
        if not (config.refit_all and kept == 0 and config.fit_first and config.init_from is None):
            return None
        inputs = joined(data.train.inputs, data.val.inputs)
        targets = joined(data.train.targets, data.val.targets)
        self.model.start_at(fit_corrected(config, inputs, targets, self.console))
        if self.state["readout"] is not None:
            self.state["readout"] = self._read_statistics(
                self.model, data.train.names + data.val.names, inputs, targets,
                torch.cat([self.train_stats, self.val_stats]), choice=self.state["readout"])
        return len(inputs)

    def _finish(self) -> None:
        """Keep the best epoch (--select-best), then write model.pt, lut.<format> and summary.json."""
        state, config, data = self.state, self.config, self.data
        kept = state["epoch"]
        if config.select_best and state["best"] is not None:
            self.model.load_state_dict(state["best"]["model"])
            kept = state["best"]["epoch"]
        summary = {"experiment": config.experiment, "data": data.source, "validation": data.grouping,
                   "train_pairs": len(data.train), "val_pairs": len(data.val), "epochs": state["epoch"],
                   "kept_epoch": kept, "train_seconds": round(state["seconds"], 1), "recipe": config.recipe,
                   "normalise": config.normalise, "diagnosis": state["diagnosis"]}
        result = self._evaluate(keep_luts=data.val_truths is not None, ssim=True)  # on photos never seen
        summary["refit_all_pairs"] = self._refit_all(kept)
        summary["readout"] = state["readout"]
        exported = self._evaluate().mean_lut if summary["refit_all_pairs"] else result.mean_lut
        summary = write_results(self.run_dir, self.model, config, data, result, summary, exported)
        refit = "; then refitted to all pairs" if summary["refit_all_pairs"] else ""
        if config.recipe == "one_look":
            self.console.print(f"validation: {data.grouping}; one look: the LUT fitted to the training "
                               f"pairs, measured below{refit}")
        else:
            start = "the fitted LUT" + (" and its readout" if state["readout"] else "")
            self.console.print(f"validation: {data.grouping}; kept epoch {kept} of {state['epoch']}"
                               + (f" ({start}, measured below{refit})" if kept == 0 else ""))
        line = (f"done: val PSNR {summary['val_psnr']:.2f} dB (per image: mean "
                f"{summary['val_psnr_mean_image']:.2f}, worst {summary['val_psnr_worst_image']:.2f}), "
                f"SSIM {summary['val_ssim']:.4f}")
        if data.val_truths is not None:
            line += f"; the true per-image LUTs reach {summary['true_luts_psnr_mean_image']:.2f} dB"
        if data.truth is not None:
            line += (f", LUT RMSE {summary['lut_rmse_all']:.4f} (all) / {summary['lut_rmse_covered']:.4f} "
                     f"(covered, {100 * summary['covered_fraction']:.0f}% of the lattice)")
        self.console.print(line)
        self.console.print(f"outputs in {self.run_dir}")
