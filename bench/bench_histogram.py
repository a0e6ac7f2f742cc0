"""Benchmark ``lutkern.channel_histogram`` against what a user would otherwise write, in one run: a loop of
``torch.histc`` over the channels (float images; ``torch.bincount`` for integer codes, which ``histc``
does not take), and lutkern's own torch ops (the fallback, ``LUTKERN_NATIVE=0``).

    python bench/bench_histogram.py                  # CPU tensors: the compiled C loop
    python bench/bench_histogram.py --device cuda    # CUDA tensors: the Triton kernel
    python bench/bench_histogram.py --cases photo-f32 --repeats 10

Cases (photo-like pixels: scikit-image's 'astronaut' upscaled with bilinear interpolation, plus a little
noise, as a camera's photo is smooth at the scale of its pixels):
  photo-f32      one 24 MP photo, 3x4000x6000 float32, 256 bins
  photo-u8       its 8-bit codes, 3x4000x6000 uint8 (planar)
  photo-u8-hwc   the same codes as a decoder gives them, (4000,6000,3) seen as (3,4000,6000): read in place
  batch-f32      64x3x256x256 float32 crops of the photo, 256 bins
  photo-f32-16b  the 24 MP photo in 65536 bins (16-bit levels)
Rows, printed as Markdown:
  time ms        best of --repeats calls after one warm-up; the rows take turns in each round, so a slow
                 spell of a shared machine hits them alike
  GB/s           bytes of the image read / time
  vs histc       time of the per-channel torch.histc (or bincount) loop / this time (> 1 is faster)
  vs torch ops   time of lutkern's torch ops / this time
  CPU ms         best process CPU time of a call, all threads summed (less sensitive than wall time to other
                 processes competing for the cores; on CUDA mostly the wait for the GPU)
torch.histc's bins are not centred on the codes (a timing baseline only); lutkern's rows are checked to
give the same counts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lutkern  # noqa: E402
from lutkern.ops.histogram_torch import channel_histogram_torch  # noqa: E402

CASES = ("photo-f32", "photo-u8", "photo-u8-hwc", "batch-f32", "photo-f32-16b")


def photo(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """``(3,h,w)`` float32 in [0, 1]: the astronaut photograph upscaled, with noise of 1/255."""
    from skimage import data as skdata  # the "demo" / "test" extras

    small = torch.from_numpy(skdata.astronaut().copy()).permute(2, 0, 1).float()[None] / 255
    big = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]
    return big.add_(torch.randn(big.shape, generator=g), alpha=1 / 255).clamp_(0, 1)


def make_case(name: str, device: str) -> tuple[torch.Tensor, int]:
    """(images, bins) of a case."""
    g = torch.Generator().manual_seed(0)
    if name == "batch-f32":
        full = photo(1024, 1024, g)
        corners = torch.randint(0, 1024 - 256, (64, 2), generator=g).tolist()
        images = torch.stack([full[:, y : y + 256, x : x + 256] for y, x in corners])
        return images.to(device), 256
    full = photo(4000, 6000, g)
    if name.startswith("photo-u8"):
        codes = (full * 255).round_().to(torch.uint8)
        if name.endswith("hwc"):
            codes = codes.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # (H,W,3) memory, (3,H,W) view
        return codes.to(device), 256
    return full.to(device), 65536 if name.endswith("16b") else 256


def per_channel_loop(images: torch.Tensor, bins: int) -> torch.Tensor:
    """What a user would write without lutkern: one histc (float) or bincount (codes) per channel."""
    flat = images.reshape(-1, *images.shape[-2:])
    if images.is_floating_point():
        rows = [torch.histc(plane, bins, min=0, max=1) for plane in flat]
    else:
        rows = [torch.bincount(plane.flatten(), minlength=bins) for plane in flat]
    return torch.stack(rows)


def torch_ops(images: torch.Tensor, bins: int) -> torch.Tensor:
    """lutkern's torch fallback, called directly (what runs without the C loop)."""
    return channel_histogram_torch(images.unsqueeze(0) if images.dim() == 3 else images, bins)


# name -> fn(images, bins); the first two are the baselines of the ratio columns.
ROWS = {"histc/bincount per channel": per_channel_loop, "lutkern torch ops": torch_ops,
        "lutkern": lutkern.channel_histogram}


def timed(fns: list, images: torch.Tensor, bins: int, repeats: int, device: str) -> list[tuple[float, float]]:
    """Best wall time and best process CPU time (all threads) of each of ``fns`` over ``repeats`` rounds
    in which every function is called once, in turn."""
    for fn in fns:
        fn(images, bins)  # warm-up: thread pools, the C build, Triton compilation
    best = [(float("inf"), float("inf"))] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            fn(images, bins)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            best[k] = (min(best[k][0], wall), min(best[k][1], cpu))
    return best


def load() -> str:
    """The 1-minute load average (the machine may be shared)."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "unknown"


def which_path(device: str) -> str:
    if device.startswith("cuda"):
        return "Triton kernel"
    from lutkern.ops.histogram_cpu import native_available

    return "compiled C loop" if native_available() else "torch ops (no C loop)"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    print(f"# channel_histogram on {args.device} ({which_path(args.device)}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads, best of {args.repeats}, load average {load()} at start")
    print("| case | bins | row | time ms | GB/s | vs histc | vs torch ops | CPU ms | vs histc (CPU) "
          "| vs torch ops (CPU) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    fns = ROWS
    for case in args.cases:
        images, bins = make_case(case, args.device)
        want = fns["lutkern torch ops"](images, bins)
        got = fns["lutkern"](images, bins)
        assert torch.equal(got.reshape(want.shape), want), f"{case}: lutkern and its torch ops disagree"
        times = timed(list(fns.values()), images, bins, args.repeats, args.device)
        size = images.numel() * images.element_size()
        label = f"{case} {tuple(images.shape)} {str(images.dtype).removeprefix('torch.')}"
        (histc, histc_cpu), (ops, ops_cpu) = times[:2]
        for name, (t, cpu) in zip(fns, times, strict=True):
            print(f"| {label} | {bins} | {name} | {t * 1e3:.1f} | {size / t / 1e9:.2f} | {histc / t:.2f}x | "
                  f"{ops / t:.2f}x | {cpu * 1e3:.0f} | {histc_cpu / cpu:.2f}x | {ops_cpu / cpu:.2f}x |",
                  flush=True)
        del images
    print(f"# load average {load()} at the end")


if __name__ == "__main__":
    main()
