"""GPU benchmarks of the Triton apply_lut kernels (needs CUDA; run by bench/gpu_check.sh).

Rows, each timed with CUDA events (median), baselines measured in the same run:
- copy: a plain tensor copy of the big batch's bytes, the bandwidth the forward kernel is compared with;
- forward: 16x3x2160x3840 float32 with a 33^3 LUT (GB/s counts the image read once and written once),
  a photo-like (smooth) image and uniform noise (every pixel in a different cell: the worst case for the
  LUT gathers), each interpolation, half precision, and a sweep of launch settings;
- train: forward and forward+backward on 64x3x256x256 with one 33^3 LUT per image against the seed's
  ``F.grid_sample`` formulation and the torch backend, with peak memory.

Each section prints its rows and survives the failure of the others. Later rows (regularizers, a training
step) are added as functions decorated with ``@section("name")``; ``--only name,...`` runs a subset.
``--json PATH`` writes every row for docs/benchmarks.md. ``--device cpu`` (with ``TRITON_INTERPRET=1`` and
tiny ``--big``/``--train`` shapes) runs every code path on a CPU as a smoke test; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable

import torch
import torch.nn.functional as F

import lutkern
from lutkern.ops import apply_lut_triton as triton_op

SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {}
ROWS: list[dict] = []
DEVICE = torch.device("cuda")


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def section(name: str):
    """Register a benchmark section under ``name`` (run in registration order)."""

    def register(fn):
        SECTIONS[name] = fn
        return fn

    return register


def row(**fields) -> None:
    ROWS.append(fields)
    print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()),
          flush=True)


def cuda_time(fn: Callable[[], object], *, min_reps: int = 3, budget_s: float = 1.0) -> float:
    """Median seconds per call of ``fn`` (CUDA events) over at least ``min_reps`` calls, about ``budget_s``
    in all, after one warm-up call (compilation)."""
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    once = max(time.perf_counter() - t0, 1e-6)
    reps = max(min_reps, min(200, int(budget_s / once)))
    if DEVICE.type != "cuda":
        return once
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def peak_mib(fn: Callable[[], object]) -> float:
    """Peak memory allocated while ``fn`` runs, above what was allocated before, in MiB."""
    if DEVICE.type != "cuda":
        return float("nan")
    sync()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    sync()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def photo_like(n: int, h: int, w: int, *, seed: int = 0) -> torch.Tensor:
    """Smooth colour fields (gradients plus low-frequency noise), like a photograph's mostly smooth areas."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    coarse = torch.rand(n, 3, max(h // 64, 2), max(w // 64, 2), device=DEVICE, generator=g)
    img = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    ramp = torch.linspace(0, 0.3, w, device=DEVICE)
    return (0.7 * img + ramp).clamp(0, 1)


def random_luts(n: int, d: int, *, seed: int = 1) -> torch.Tensor:
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    noise = torch.randn(n, d, d, d, 3, device=DEVICE, generator=g)
    return lutkern.identity_lut(d, device=DEVICE) + 0.1 * noise


def grid_sample_lut(img: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """The seed's trilinear LUT: ``F.grid_sample`` on the LUT as a 5-D volume, border padding."""
    grid = ((img - 0.5) * 2).permute(0, 2, 3, 1).unsqueeze(1)
    vol = lut.permute(0, 4, 1, 2, 3)
    return F.grid_sample(vol, grid, mode="bilinear", padding_mode="border", align_corners=True).squeeze(2)


@section("env")
def env(args) -> None:
    import triton

    versions = dict(torch=torch.__version__, triton=triton.__version__, python=sys.version.split()[0],
                    date=time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()))
    if DEVICE.type != "cuda":
        row(device=str(DEVICE), **versions)
        return
    p = torch.cuda.get_device_properties(DEVICE)
    row(gpu=p.name.replace(" ", "_"), sms=p.multi_processor_count, mem_gib=round(p.total_memory / 2**30),
        **versions)


def copy_bandwidth(numel: int) -> float:
    """GB/s (read + write) of copying ``numel`` float32 values from one tensor to another."""
    src = torch.rand(numel, device=DEVICE)
    dst = torch.empty_like(src)
    return 2 * numel * 4 / cuda_time(lambda: dst.copy_(src)) / 1e9


def grads(fn: Callable, img: torch.Tensor, lut: torch.Tensor, grad_out: torch.Tensor):
    """(image gradient, LUT gradient) of ``fn(img, lut)``: one forward and one backward."""
    return torch.autograd.grad(fn(img, lut), (img, lut), grad_out)


@section("forward")
def forward(args) -> None:
    n, h, w = args.big
    copy_gbs = copy_bandwidth(n * 3 * h * w)
    row(op="copy", shape=f"{n}x3x{h}x{w}", dtype="float32", gbs=copy_gbs)
    lut = random_luts(1, 33)
    images = {"photo": photo_like(n, h, w), "noise": torch.rand(n, 3, h, w, device=DEVICE)}
    for content, img in images.items():
        for interp in ("trilinear", "tetrahedral", "nearest"):
            s = cuda_time(lambda img=img, interp=interp: triton_op.apply_lut_triton(img, lut, interp))
            gbs = 2 * img.numel() * img.element_size() / s / 1e9
            row(op="forward", image=content, interp=interp, dtype="float32", lut="33^3 shared", ms=s * 1e3,
                gbs=gbs, pct_copy=100 * gbs / copy_gbs)
    img = images.pop("photo")
    del images
    for dtype in (torch.float16, torch.bfloat16):
        low = img.to(dtype)
        s = cuda_time(lambda low=low: triton_op.apply_lut_triton(low, lut, "trilinear"))
        gbs = 2 * low.numel() * low.element_size() / s / 1e9
        row(op="forward", image="photo", interp="trilinear", dtype=str(dtype)[6:], ms=s * 1e3, gbs=gbs,
            pct_copy=100 * gbs / copy_gbs)
        del low
    per_image = random_luts(n, 33)
    s = cuda_time(lambda: triton_op.apply_lut_triton(img, per_image, "trilinear"))
    gbs = 2 * img.numel() * 4 / s / 1e9
    row(op="forward", image="photo", interp="trilinear", dtype="float32", lut="33^3 per image", ms=s * 1e3,
        gbs=gbs, pct_copy=100 * gbs / copy_gbs)
    default = dict(triton_op.GPU_LAUNCH)
    try:
        for block, warps in ((256, 4), (512, 4), (1024, 4), (512, 8), (1024, 8), (2048, 8), (2048, 16)):
            triton_op.GPU_LAUNCH["forward"] = (block, warps)
            s = cuda_time(lambda: triton_op.apply_lut_triton(img, lut, "trilinear"), budget_s=0.3)
            gbs = 2 * img.numel() * 4 / s / 1e9
            row(op="forward sweep", image="photo", interp="trilinear", block=block, warps=warps, ms=s * 1e3,
                gbs=gbs, pct_copy=100 * gbs / copy_gbs)
    finally:
        triton_op.GPU_LAUNCH.update(default)


@section("train")
def train(args) -> None:
    n, h, w = args.train
    img = photo_like(n, h, w, seed=2)
    lut = random_luts(n, 33, seed=3)
    grad_out = torch.randn_like(img)
    got = triton_op.apply_lut_triton(img, lut, "trilinear")
    row(op="check", interp="trilinear",
        max_abs_diff_vs_grid_sample=(got - grid_sample_lut(img, lut)).abs().max().item())
    impls = {
        "grid_sample": grid_sample_lut,
        "torch trilinear": lambda i, lt: lutkern.apply_lut(i, lt, backend="torch"),
        "triton trilinear": lambda i, lt: triton_op.apply_lut_triton(i, lt, "trilinear"),
        "triton tetrahedral": lambda i, lt: triton_op.apply_lut_triton(i, lt, "tetrahedral"),
    }
    img_g, lut_g = img.clone().requires_grad_(), lut.clone().requires_grad_()
    base = {}
    for name, fn in impls.items():
        try:

            def fwd(fn=fn):
                return fn(img, lut)

            def fwd_bwd(fn=fn):
                return grads(fn, img_g, lut_g, grad_out)

            times = {"fwd": cuda_time(fwd), "fwd+bwd": cuda_time(fwd_bwd)}
            mems = {"fwd": peak_mib(fwd), "fwd+bwd": peak_mib(fwd_bwd)}
            if name == "grid_sample":
                base = times
            for kind in ("fwd", "fwd+bwd"):
                row(op=kind, impl=name, image="photo", shape=f"{n}x3x{h}x{w}", lut="33^3 per image",
                    ms=times[kind] * 1e3, mpix_s=n * h * w / times[kind] / 1e6,
                    x_vs_grid_sample=base.get(kind, float("nan")) / times[kind], peak_mib=mems[kind])
        except Exception:
            print(f"  {name}: FAILED\n{traceback.format_exc()}", flush=True)
    triton_fn = impls["triton trilinear"]
    first, second = (grads(triton_fn, img_g, lut_g, grad_out) for _ in range(2))
    row(op="determinism", bitwise_equal_image_grad=torch.equal(first[0], second[0]),
        bitwise_equal_lut_grad=torch.equal(first[1], second[1]))
    # Launch settings and run aggregation, on the photo-like image and on noise (no runs to aggregate).
    noise_g = torch.rand_like(img).requires_grad_()
    default = dict(triton_op.GPU_LAUNCH), triton_op.AGGREGATE_RUNS
    try:
        for content, image in (("photo", img_g), ("noise", noise_g)):
            for aggregate in (True, False):
                for block, warps in ((128, 4), (256, 8), (512, 8)):
                    triton_op.GPU_LAUNCH["backward"] = (block, warps)
                    triton_op.AGGREGATE_RUNS = aggregate
                    s = cuda_time(lambda image=image: grads(triton_fn, image, lut_g, grad_out), budget_s=0.3)
                    row(op="fwd+bwd sweep", impl="triton trilinear", image=content, aggregate=aggregate,
                        bwd_block=block, warps=warps, ms=s * 1e3,
                        x_vs_grid_sample=base.get("fwd+bwd", float("nan")) / s)
    finally:
        triton_op.GPU_LAUNCH.update(default[0])
        triton_op.AGGREGATE_RUNS = default[1]


# ---- later rows (regularizers, a training step): add @section("name") functions above this line ----


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="sections to run, comma-separated: " + ",".join(SECTIONS))
    parser.add_argument("--big", type=int, nargs=3, default=(16, 2160, 3840), metavar=("N", "H", "W"))
    parser.add_argument("--train", type=int, nargs=3, default=(64, 256, 256), metavar=("N", "H", "W"))
    parser.add_argument("--json", default=None, help="write all rows to this file")
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu for a smoke test")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device", file=sys.stderr)
        return 2
    wanted = [s for s in args.only.split(",") if s] or list(SECTIONS)
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; known: {list(SECTIONS)}")
    failed = []
    for name in wanted:
        print(f"[{name}]", flush=True)
        start = time.perf_counter()
        try:
            SECTIONS[name](args)
        except Exception:
            failed.append(name)
            print(f"  section {name} FAILED\n{traceback.format_exc()}", flush=True)
        finally:
            if DEVICE.type == "cuda":
                torch.cuda.empty_cache()
        print(f"  ({time.perf_counter() - start:.1f}s)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(ROWS, f, indent=1, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
