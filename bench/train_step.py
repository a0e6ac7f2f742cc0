"""Images per second of one full training step of img2lut against the seed notebook's step, same run.

    python bench/train_step.py                      # CPU, batch 8, 256x256, S=33: both settings below
    python bench/train_step.py --device cuda --batch 64 --amp bf16 --channels-last [--compile]

A step is forward, loss with the smoothness regularizer, backward and optimizer step, plus reading the
loss back as a float (both training loops log it every step). The two pipelines start from the same
weights (identical module and parameter names) and see the same random images:

  seed   the notebook's ``ResNetLUTGenerator`` copied as written: the CNN sees the full image, the LUT is
         applied by ``_trilinear_interpolation`` (5-D ``F.grid_sample``), loss = MSE + 0.1 * 0.001 *
         ``smoothness_regularization`` (its ``calc_lut_loss``, with the ``diff_z`` slicing fixed, see
         ``lutkern.reference.regularizers``), ``torch.optim.Adam`` with default options, fp32, eager.
  ours   ``img2lut.model.ResNetLUTGenerator`` (``lutkern.apply_lut``), ``img2lut.losses.total_loss`` with
         the same smoothness weight (``lutkern.smoothness``), the optimizer of ``img2lut.train``; the
         --amp / --channels-last / --compile flags apply to this pipeline only.

Settings (rows): ``seed`` = the CNN sees the whole --image-size image and the loss covers all of it, as in
the notebook; ``default`` = the default training preset (the CNN sees a --cnn-size thumbnail, the loss a
--loss-stride subsample, every N-th pixel in x and y; thumbnails are made once when the data is loaded, so
they are inputs here). Without --cnn-size/--loss-stride both settings are measured; the seed pipeline
always runs its own (full) setting.

Times are per step, measured alternately (seed, ours, seed, ...) so that a change of machine load hits
both; the ratio is seed time / our time (> 1: we are faster). Besides wall time, the CPU time of the process
is reported: on a shared CPU with --threads 1 it is the steadiest measure of the work a step costs (it
does not count time spent waiting for a core; with more threads it includes their spin-waiting).

Peak memory: CUDA allocator peak during the first timed step; on CPU, peak RSS of a fresh process running
two steps of one pipeline minus its RSS before the first one (includes the Adam state, an approximation
with allocator slack); --no-memory skips it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from img2lut.config import TrainConfig  # noqa: E402
from img2lut.losses import LossWeights, total_loss  # noqa: E402
from img2lut.model import ResNetLUTGenerator  # noqa: E402
from img2lut.trainer import make_optimizer  # noqa: E402
from lutkern.reference.regularizers import smoothness_reference  # noqa: E402

# The seed's calc_lut_loss: 0.1 * smoothness_regularization(lut, lambda_smooth=0.001).
SEED_SMOOTH_WEIGHT = 0.1 * 0.001
SEED_LR = 1e-2
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class SeedResidualBlock(nn.Module):
    """The notebook's ``ResidualBlock``."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        residual = x
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(residual)
        return F.relu(out)


class SeedResNetLUTGenerator(nn.Module):
    """The notebook's ``ResNetLUTGenerator`` with ``trilinear=True``: returns ``(transformed, lut)``."""

    def __init__(self, lut_size=33):
        super().__init__()
        self.lut_size = lut_size
        self.initial_conv = nn.Sequential(nn.Conv2d(3, 32, kernel_size=3, stride=1, padding=1),
                                          nn.BatchNorm2d(32), nn.ReLU())
        self.layer1 = SeedResidualBlock(32, 64, stride=2)
        self.layer2 = SeedResidualBlock(64, 128, stride=2)
        self.layer3 = SeedResidualBlock(128, 256, stride=2)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.lut_generator = nn.Sequential(nn.Linear(256, 512), nn.ReLU(),
                                           nn.Linear(512, lut_size * lut_size * lut_size * 3))

    def _trilinear_interpolation(self, luts, images):
        img = (images - 0.5) * 2.0
        img = img.permute(0, 2, 3, 1).unsqueeze(1)
        LUT = luts.permute(0, 4, 1, 2, 3)  # noqa: N806 (the notebook's name)
        result = F.grid_sample(LUT, img, mode="bilinear", padding_mode="border", align_corners=True)
        return result.squeeze(2)

    def forward(self, x):
        x_orig = x
        x = self.initial_conv(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        features = self.global_pool(x).view(x.size(0), -1)
        lut = self.lut_generator(features)
        lut = lut.view(-1, self.lut_size, self.lut_size, self.lut_size, 3)
        lut = torch.sigmoid(lut)
        return self._trilinear_interpolation(lut, x_orig), lut


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SeedPipeline:
    """The notebook's training step (``train_model`` body + ``calc_lut_loss``)."""

    name = "seed"

    def __init__(self, model: SeedResNetLUTGenerator, batch: dict):
        self.model = model.train()
        self.opt = torch.optim.Adam(model.parameters(), lr=SEED_LR)
        self.x, self.y = batch["x"], batch["y"]

    def step(self) -> float:
        self.opt.zero_grad()
        transformed, lut = self.model(self.x)
        loss = F.mse_loss(transformed, self.y) + SEED_SMOOTH_WEIGHT * smoothness_reference(lut)
        loss.backward()
        self.opt.step()
        return loss.item()


class OurPipeline:
    """img2lut's training step as ``img2lut.train`` runs it, with the speed options of this benchmark."""

    name = "ours"

    def __init__(self, model: ResNetLUTGenerator, batch: dict, args):
        device = batch["x"].device
        self.amp = AMP_DTYPES[args.amp]
        self.device = device
        config = TrainConfig(lr=SEED_LR, scheduler="cosine", device=str(device))
        self.opt, _ = make_optimizer(model, config, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == torch.float16)
        self.weights = LossWeights(smooth=SEED_SMOOTH_WEIGHT)
        thumb = batch["thumb"]
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
            thumb = thumb.contiguous(memory_format=torch.channels_last)
        self.model = model.train()
        self.forward = torch.compile(model) if args.compile else model
        self.thumb, self.full, self.y = thumb, batch["full"], batch["sub_y"]

    def step(self) -> float:
        autocast = (torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None
                    else contextlib.nullcontext())
        with autocast:
            out, lut = self.forward(self.thumb, full=self.full)
            loss, _ = total_loss(out, self.y, lut, self.weights)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return float(loss.detach())


def make_batch(args, cnn_size: int, stride: int, device: torch.device) -> dict:
    """Random images ``x``/``y`` (B,3,N,N); our inputs: ``thumb`` (B,3,c,c) and ``full``/``sub_y``, the
    strided views ``[..., ::stride, ::stride]`` that img2lut.train hands to the model and the loss."""
    g = torch.Generator().manual_seed(0)
    n = args.image_size
    x = torch.rand(args.batch, 3, n, n, generator=g)
    y = torch.rand(args.batch, 3, n, n, generator=g)
    thumb = F.interpolate(x, size=(cnn_size, cnn_size), mode="bilinear", antialias=True) if cnn_size else x
    x, y, thumb = x.to(device), y.to(device), thumb.contiguous().to(device)
    return {"x": x, "y": y, "thumb": thumb,
            "full": x[..., ::stride, ::stride], "sub_y": y[..., ::stride, ::stride]}


def make_pipelines(args, cnn_size: int, stride: int, device: torch.device):
    torch.manual_seed(0)
    seed_model = SeedResNetLUTGenerator(args.lut_size)
    ours = ResNetLUTGenerator(args.lut_size, init="default")
    ours.load_state_dict(seed_model.state_dict())  # strict: the same architecture, parameter for parameter
    batch = make_batch(args, cnn_size, stride, device)
    return SeedPipeline(seed_model.to(device), batch), OurPipeline(ours.to(device), batch, args)


def timed_step(pipe, device: torch.device) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` of one step."""
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    pipe.step()
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def _rss_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def cpu_peak_here(args, which: str, cnn_size: int, stride: int) -> float:
    """MiB of peak RSS over two steps of one pipeline in this (fresh) process, beyond model and inputs."""
    pipes = dict(zip(("seed", "ours"), make_pipelines(args, cnn_size, stride, torch.device("cpu")),
                     strict=True))
    pipe = pipes.pop(which)
    pipes.clear()
    gc.collect()
    before = _rss_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Linux: reset the peak RSS (VmHWM) to the current RSS
    pipe.step()
    pipe.step()
    return max(0.0, _rss_mib("VmHWM") - before)


def cpu_peak(argv: list[str], which: str, cnn_size: int, stride: int) -> float:
    cmd = [sys.executable, __file__, *argv, "--measure-memory", f"{which}:{cnn_size}:{stride}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def profile(pipe, device: torch.device, rows: int = 12) -> None:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        pipe.step()
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\n## profile: {pipe.name}\n")
    print(prof.key_averages().table(sort_by=key, row_limit=rows))


def settings(args) -> list[tuple[str, int, int]]:
    if args.cnn_size is not None or args.loss_stride is not None:
        return [("custom", args.cnn_size or 0, args.loss_stride or 1)]
    default = TrainConfig()
    # A preset size larger than a small --image-size means the whole image, as 0 does.
    cnn = default.cnn_size if default.cnn_size < args.image_size else 0
    return [("seed", 0, 1), ("default", cnn, default.loss_stride)]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--cnn-size", type=int, help="our CNN's thumbnail size (0: the whole image)")
    p.add_argument("--loss-stride", type=int, help="our loss sees every N-th pixel in x and y (1: all)")
    p.add_argument("--lut-size", type=int, default=33)
    p.add_argument("--amp", choices=tuple(AMP_DTYPES), default="none")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per pipeline (after 2 warm-ups)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    p.add_argument("--profile", action="store_true", help="print the top ops of one step of each pipeline")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--json", help="also write the rows to this file")
    p.add_argument("--measure-memory", help=argparse.SUPPRESS)  # internal: "pipeline:cnn:stride"
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.measure_memory:
        which, cnn, stride = args.measure_memory.split(":")
        print(json.dumps({"peak_mib": cpu_peak_here(args, which, int(cnn), int(stride))}))
        return
    device = torch.device(args.device)
    flags = f"amp {args.amp}" + ", channels-last" * args.channels_last + ", compile" * args.compile
    print(f"# training step: batch {args.batch}, {args.image_size}x{args.image_size}, S={args.lut_size}, "
          f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}; ours: {flags}; "
          f"median of {args.repeats} alternated steps after 2 warm-ups")
    print("| setting | pipeline | CNN px | loss px | wall ms/step (median) | wall ms (best) | CPU ms/step "
          "(median) | images/s (wall) | vs seed (wall) | vs seed (CPU) | peak MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for setting, cnn, stride in settings(args):
        pipes = make_pipelines(args, cnn, stride, device)
        for pipe in pipes:
            for _ in range(2):
                pipe.step()
        times = {p.name: [] for p in pipes}
        peaks = {}
        if device.type == "cuda":
            for pipe in pipes:
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
                times[pipe.name].append(timed_step(pipe, device))
                peaks[pipe.name] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
        while len(times["ours"]) < args.repeats:
            for pipe in pipes:
                times[pipe.name].append(timed_step(pipe, device))
        if args.profile:
            for pipe in pipes:
                profile(pipe, device)
        base_wall = statistics.median(t[0] for t in times["seed"])
        base_cpu = statistics.median(t[1] for t in times["seed"])
        for pipe in pipes:
            wall = statistics.median(t[0] for t in times[pipe.name])
            best = min(t[0] for t in times[pipe.name])
            cpu = statistics.median(t[1] for t in times[pipe.name])
            if pipe.name in peaks:
                peak = peaks[pipe.name]
            elif args.no_memory:
                peak = float("nan")
            else:
                peak = cpu_peak(argv, pipe.name, cnn, stride)
            n = args.image_size
            px = (n, n) if pipe.name == "seed" else (cnn or n, -(-n // stride))
            row = {"setting": setting, "pipeline": pipe.name, "cnn_px": px[0], "loss_px": px[1],
                   "wall_ms_median": wall * 1e3, "wall_ms_best": best * 1e3, "cpu_ms_median": cpu * 1e3,
                   "images_per_s": args.batch / wall, "vs_seed_wall": base_wall / wall,
                   "vs_seed_cpu": base_cpu / cpu, "peak_mib": peak}
            rows.append(row)
            print(f"| {setting} | {pipe.name} | {px[0]} | {px[1]} | {wall * 1e3:.0f} | {best * 1e3:.0f} | "
                  f"{cpu * 1e3:.0f} | {args.batch / wall:.2f} | {base_wall / wall:.2f}x | "
                  f"{base_cpu / cpu:.2f}x | {peak:.0f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"argv": argv, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
