"""Benchmark ``lutkern.apply_lut`` against the seed's ``F.grid_sample`` (5-D, bilinear, border,
align_corners=True), forward and forward+backward (gradients for both the image and the LUT).

    python bench/bench_apply_lut.py                                   # CPU, torch backend, 64x3x256x256, D=33
    python bench/bench_apply_lut.py --backend torch-eager             # the torch backend without its C loop
    python bench/bench_apply_lut.py --pixels photo                    # crops of photographs, not noise
    python bench/bench_apply_lut.py --device cuda --backend triton --batch 16 --size 2160 3840

Every row is measured in the same run as its baseline, on the same inputs (uniform random pixels, or
256x256 crops of scikit-image's sample photographs with --pixels photo; one random LUT per image unless
--shared-lut). On the CPU the torch backend runs its compiled C loop; --backend torch-eager sets
LUTKERN_NATIVE=0 for the eager torch ops. Printed as Markdown rows:
  time        best of --repeats calls after one warm-up; the calls of the baseline and of every row take
              turns, so a slow spell of a shared machine hits them alike (best-of is the least noisy)
  Mpix/s      pixels per second (batch * H * W / time)
  GB/s        minimum traffic (read the image, write the output; +grad in/grad out for fwd+bwd) / time
  vs seed     grid_sample time / this time (> 1 is faster than the seed)
  CPU ms      best process CPU time of a call, all threads summed (less sensitive than wall time to other
              processes competing for the cores; the CPU ratio equals the wall ratio only if both sides
              keep all threads busy)
  peak MiB    memory beyond the inputs while the call runs. CUDA: allocator peak minus allocation before
              the call. CPU: peak RSS (VmHWM, reset just before) of a fresh process running the call
              once, after a warm-up on a tiny image, minus its RSS just before: an approximation that
              includes allocator slack; --no-memory skips these processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lutkern  # noqa: E402

DTYPES = {name: getattr(torch, name) for name in ("float32", "float16", "bfloat16", "float64")}


def seed_grid_sample(
    image: torch.Tensor, lut: torch.Tensor, interpolation: str = "trilinear"
) -> torch.Tensor:
    """The seed notebook's ``_trilinear_interpolation`` (the baseline for every row)."""
    grid = ((image - 0.5) * 2.0).permute(0, 2, 3, 1).unsqueeze(1)
    out = F.grid_sample(
        lut.permute(0, 4, 1, 2, 3), grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return out.squeeze(2)


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def photo_crops(n: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """``(n,3,h,w)`` random crops of scikit-image's sample photographs, in [0, 1]."""
    from skimage import data as skdata  # the "demo" / "test" extras

    photos = [
        torch.from_numpy(getattr(skdata, name)().copy()).permute(2, 0, 1).float() / 255 for name in PHOTOS
    ]
    crops = []
    for k in range(n):
        photo = photos[k % len(photos)]
        if photo.shape[1] < h or photo.shape[2] < w:
            raise SystemExit(f"--size {h} {w} is larger than the photo {PHOTOS[k % len(PHOTOS)]!r}")
        top = int(torch.randint(0, photo.shape[1] - h + 1, (1,), generator=g))
        left = int(torch.randint(0, photo.shape[2] - w + 1, (1,), generator=g))
        crops.append(photo[:, top : top + h, left : left + w])
    return torch.stack(crops)


def make_inputs(args) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h, w = args.size
    dtype = DTYPES[args.dtype]
    if args.pixels == "photo":
        image = photo_crops(args.batch, h, w, g).to(dtype)
    else:
        image = torch.rand(args.batch, 3, h, w, generator=g).to(dtype)
    lut = torch.rand(
        1 if args.shared_lut else args.batch, args.lut_size, args.lut_size, args.lut_size, 3, generator=g
    )
    if args.shared_lut:
        lut = lut.expand(args.batch, -1, -1, -1, -1)
    return image.to(args.device), lut.to(dtype).to(args.device)


def case_fn(name: str, args):
    """``fn(image, lut)`` for a row name ``"<impl>/<interpolation>"``; the seed ignores the interpolation."""
    impl, interpolation = name.split("/")
    if impl == "grid_sample":
        return seed_grid_sample
    backend = "torch" if args.backend == "torch-eager" else args.backend  # see main() for the eager switch

    def run(image, lut):
        if args.shared_lut:
            lut = lut[0]
        return lutkern.apply_lut(image, lut, interpolation=interpolation, backend=backend)

    return run


def call(fn, image, lut, mode: str, grad_out: torch.Tensor | None):
    if mode == "fwd":
        with torch.no_grad():
            return fn(image, lut)
    image = image.detach().requires_grad_()
    lut = lut.detach().requires_grad_()
    out = fn(image, lut)
    torch.autograd.grad(out, (image, lut), grad_out)
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fns: list, image, lut, mode, grad_out, args) -> list[tuple[float, float]]:
    """Best wall time and best process CPU time (all threads) of each of ``fns`` over ``args.repeats``
    rounds in which every function is called once, in turn."""
    for fn in fns:
        call(fn, image, lut, mode, grad_out)  # warm-up: thread pools, compilation, allocator
    best = [(float("inf"), float("inf")) for _ in fns]
    for _ in range(args.repeats):
        for k, fn in enumerate(fns):
            sync(args.device)
            t0, c0 = time.perf_counter(), time.process_time()
            call(fn, image, lut, mode, grad_out)
            sync(args.device)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            best[k] = (min(best[k][0], wall), min(best[k][1], cpu))
    return best


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _reset_peak_rss() -> None:
    """Reset this process's RSS high-water mark (VmHWM) to its current RSS (Linux >= 4.0).

    ``getrusage``'s ru_maxrss cannot be used: it is inherited from the parent across fork and exec.
    """
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_memory_here(name: str, mode: str, args) -> float:
    """MiB beyond the inputs during one call (see the module docstring)."""
    image, lut = make_inputs(args)
    grad_out = torch.ones_like(image) if mode == "fwdbwd" else None
    fn = case_fn(name, args)
    if args.device.startswith("cuda"):
        call(fn, image, lut, mode, grad_out)  # warm-up so compilation is not counted
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        call(fn, image, lut, mode, grad_out)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    # Warm-up on one tiny image first, so that code pages of the ops and thread pools are not counted.
    tiny = (image[:1, :, :8, :8], lut[:1], None if grad_out is None else grad_out[:1, :, :8, :8])
    call(fn, tiny[0], tiny[1], mode, tiny[2])
    _reset_peak_rss()
    before = _status_kib("VmRSS")
    call(fn, image, lut, mode, grad_out)
    return (_status_kib("VmHWM") - before) / 2**10


def peak_memory(name: str, mode: str, args, argv: list[str]) -> float:
    if args.device.startswith("cuda"):
        return peak_memory_here(name, mode, args)
    cmd = [sys.executable, __file__, *argv, "--measure-memory", f"{name}:{mode}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    p.add_argument("--lut-size", type=int, default=33)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", choices=("torch", "torch-eager", "triton"), default="torch")
    p.add_argument("--pixels", choices=("uniform", "photo"), default="uniform")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    p.add_argument("--interpolations", nargs="+", default=["trilinear", "tetrahedral", "nearest"])
    p.add_argument("--modes", nargs="+", choices=("fwd", "fwdbwd"), default=["fwd", "fwdbwd"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--shared-lut", action="store_true", help="one LUT for the whole batch")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--measure-memory", help=argparse.SUPPRESS)  # internal: one "name:mode" in this process
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.backend == "torch-eager":
        os.environ["LUTKERN_NATIVE"] = "0"
    if args.measure_memory:
        name, mode = args.measure_memory.rsplit(":", 1)
        print(json.dumps({"peak_mib": peak_memory_here(name, mode, args)}))
        return
    image, lut = make_inputs(args)
    grad_out = torch.randn_like(image)
    pixels = image.shape[0] * image.shape[2] * image.shape[3]
    elem = image.element_size()
    print(
        f"# apply_lut: batch {args.batch}, {args.size[0]}x{args.size[1]}, D={args.lut_size}, {args.dtype}, "
        f"{args.pixels} pixels, {'shared' if args.shared_lut else 'per-image'} LUT, device {args.device}, "
        f"backend {args.backend}{cpu_loop(args)}, torch threads {torch.get_num_threads()}, "
        f"best of {args.repeats}"
    )
    print("| case | mode | time ms | Mpix/s | GB/s | vs seed | CPU ms | vs seed (CPU) | peak MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    names = ["grid_sample/trilinear"] + [f"{args.backend}/{i}" for i in args.interpolations]
    for mode in args.modes:
        traffic = pixels * 3 * elem * (2 if mode == "fwd" else 4)
        results = timed([case_fn(name, args) for name in names], image, lut, mode, grad_out, args)
        base_wall, base_cpu = results[0]
        for name, (wall, cpu) in zip(names, results, strict=True):
            mem = "-" if args.no_memory else f"{peak_memory(name, mode, args, argv):.0f}"
            print(
                f"| {name} | {mode} | {wall * 1e3:.1f} | {pixels / wall / 1e6:.1f} | "
                f"{traffic / wall / 1e9:.2f} | {base_wall / wall:.2f}x | "
                f"{cpu * 1e3:.0f} | {base_cpu / cpu:.2f}x | {mem} |",
                flush=True,
            )


def cpu_loop(args) -> str:
    """Which CPU loop the torch backend runs, for the header line."""
    if args.backend == "triton" or args.device != "cpu":
        return ""
    from lutkern.ops.apply_lut_cpu import native_available

    return " (compiled C loop)" if native_available() else " (eager torch ops)"


if __name__ == "__main__":
    main()
