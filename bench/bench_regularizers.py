"""Benchmark the LUT regularizers, forward + backward, against the seed's torch smoothness function.

    python bench/bench_regularizers.py                                  # CPU: torch fallback vs the seed
    python bench/bench_regularizers.py --device cuda --backend triton   # GPU: fused Triton kernels too

Rows, all measured in the same run on the same LUT batch (default B=64, D=33, float32):
  seed smoothness       the seed notebook's ``smoothness_regularization`` (literal transcription)
  literal all three     seed smoothness + TPAMI TV + TPAMI monotonicity, literal transcriptions
  torch smoothness      lutkern's fallback, smoothness only
  torch all three       lutkern's fallback, the three terms from one difference per axis
  triton smoothness     the fused Triton kernels (all three terms always come out of the one pass)
  triton all three      ``lutkern.lut_regularizers(smooth=, tv=, mono=)``
Printed as Markdown rows: median time of fwd+bwd, speed-up vs the seed (smoothness rows) or vs the literal
three (all-three rows), effective bandwidth counting the minimum traffic (read the LUT twice, write its
gradient once), and the peak memory allocated beyond the input (CUDA: allocator peak; CPU: peak RSS growth
of a fresh process running the row once, so an approximation).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lutkern  # noqa: E402
from lutkern._backend import resolve_backend  # noqa: E402
from lutkern.ops.regularizers_torch import regularizer_terms_torch  # noqa: E402
from lutkern.reference import (  # noqa: E402
    monotonicity_reference,
    smoothness_reference,
    total_variation_reference,
)

DTYPES = {name: getattr(torch, name) for name in ("float32", "float16", "bfloat16", "float64")}


def rows(backend: str) -> dict:
    """Row name -> (function of a (B,D,D,D,3) LUT returning a scalar, baseline row name)."""
    table = {
        "seed smoothness": (smoothness_reference, None),
        "literal all three": (
            lambda x: smoothness_reference(x) + total_variation_reference(x) + monotonicity_reference(x),
            None,
        ),
        "torch smoothness": (
            lambda x: regularizer_terms_torch(x, (True, False, False))[0],
            "seed smoothness",
        ),
        "torch all three": (lambda x: regularizer_terms_torch(x).sum(), "literal all three"),
    }
    if backend == "triton":
        table["triton smoothness"] = (lambda x: lutkern.smoothness(x, backend="triton"), "seed smoothness")
        table["triton all three"] = (
            lambda x: lutkern.lut_regularizers(x, smooth=1.0, tv=1.0, mono=1.0, backend="triton"),
            "literal all three",
        )
    return table


def make_lut(args) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand(args.batch, args.size, args.size, args.size, 3, generator=gen) - 0.5
    lut = lutkern.identity_lut(args.size) + 0.1 * noise
    return lut.to(device=args.device, dtype=DTYPES[args.dtype]).requires_grad_(True)


def step(fn, lut: torch.Tensor) -> None:
    lut.grad = None
    fn(lut).backward()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_ms(fn, lut: torch.Tensor, args) -> float:
    for _ in range(args.warmup):
        step(fn, lut)
    times = []
    for _ in range(args.repeats):
        sync(args.device)
        start = time.perf_counter()
        step(fn, lut)
        sync(args.device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def peak_mib(name: str, args) -> float:
    if args.device.startswith("cuda"):
        lut = make_lut(args)
        step(rows(args.backend)[name][0], lut)  # compile / warm the allocator first
        lut.grad = None
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(rows(args.backend)[name][0], lut)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    cmd = [sys.executable, __file__, "--rss-row", name] + _forwarded(args)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
    return float(out.stdout.strip().splitlines()[-1])


def _forwarded(args) -> list[str]:
    return ["--device", args.device, "--backend", args.backend, "--batch", str(args.batch),
            "--size", str(args.size), "--dtype", args.dtype]


def _status_mib(field: str) -> float:
    """``VmRSS``/``VmHWM`` of this process from /proc (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_row(args) -> None:
    """Child process: print the peak RSS growth (MiB) of one fwd+bwd of one row on a fresh input."""
    lut = make_lut(args)
    fn = rows(args.backend)[args.rss_row][0]
    # getrusage's ru_maxrss survives exec (it would report the parent's peak); VmHWM is this process's,
    # and writing 5 to clear_refs resets it to the current RSS (the input's temporaries are gone).
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_mib("VmRSS")
    step(fn, lut)
    print(_status_mib("VmHWM") - before)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backend", default=None, choices=["torch", "triton"],
                        help="backend of the lutkern rows (default: automatic for the device)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=33)
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--warmup", type=int, default=None, help="default: 1 on CPU, 5 on GPU")
    parser.add_argument("--repeats", type=int, default=None, help="default: 3 on CPU, 20 on GPU")
    parser.add_argument("--rss-row", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.backend = resolve_backend(args.backend, torch.device(args.device))
    except (RuntimeError, ValueError) as exc:
        parser.error(str(exc))
    on_gpu = args.device.startswith("cuda")
    args.warmup = args.warmup if args.warmup is not None else (5 if on_gpu else 1)
    args.repeats = args.repeats if args.repeats is not None else (20 if on_gpu else 3)
    if args.rss_row:
        return rss_row(args)

    lut = make_lut(args)
    traffic = 3 * lut.numel() * lut.element_size()
    print(f"# B={args.batch} D={args.size} {args.dtype} on {args.device}, lutkern backend {args.backend}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print("| row | device | ms fwd+bwd | speed-up | GB/s | peak extra MiB |")
    print("|---|---|---:|---:|---:|---:|")
    measured = {}
    for name, (fn, baseline) in rows(args.backend).items():
        ms = measured[name] = time_ms(fn, lut, args)
        speedup = measured[baseline] / ms if baseline else 1.0
        print(f"| {name} | {args.device} | {ms:.2f} | {speedup:.2f}x | {traffic / ms / 1e6:.2f} "
              f"| {peak_mib(name, args):.0f} |", flush=True)


if __name__ == "__main__":
    main()
