"""lutkern.apply_lut on the CPU beside OpenColorIO's CPU processor, in the same run on the same pixels.

    python bench/bench_vs_ocio.py                       # 64 x 3x256x256 float32, one shared 33^3 LUT
    python bench/bench_vs_ocio.py --repeats 20 --threads 2

OpenColorIO (a test dependency): a FileTransform of the LUT written as a .cube, its default CPU
processor applied in place to packed RGB float32, the batch split into ``--threads`` parts of whole
rows applied by as many Python threads (OCIO's Python calls release the GIL; one call runs on one
thread). Two ways: ``ocio rows`` applies a ``PackedImageDesc`` of the part's rows (width W), the fast
way; ``ocio applyRGB`` calls ``applyRGB`` on the part as a ``(P, 3)`` array, which OCIO takes as one
row of P pixels (measured 3-4x slower: its scanline buffers then span the whole part). Ratios are
against ``ocio rows``. lutkern: ``apply_lut`` on the planar ``(N,3,H,W)`` batch, torch backend (its C
loop), torch threads = ``--threads``; ``out=`` rows reuse one output buffer.
The seed's ``F.grid_sample`` is the baseline of the forward+backward rows (gradients for the image and
the LUT). Rows take turns in every round (a slow spell of a shared machine hits them alike); time is the
best of ``--repeats`` after a warm-up. The header line checks that both sides compute the same image.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_apply_lut import seed_grid_sample  # noqa: E402

import lutkern  # noqa: E402


def ocio_processor(lut: torch.Tensor, interpolation: str, directory: Path):
    import PyOpenColorIO as ocio

    path = directory / "bench.cube"
    lutkern.write_cube(path, lut, precision=9)
    interp = {"trilinear": ocio.INTERP_LINEAR, "tetrahedral": ocio.INTERP_TETRAHEDRAL}[interpolation]
    transform = ocio.FileTransform(src=str(path), interpolation=interp)
    return ocio.Config.CreateRaw().getProcessor(transform).getDefaultCPUProcessor()


def ocio_apply(cpu, packed: np.ndarray, threads: int, how: str = "rows") -> None:
    """Apply in place to ``packed`` ``(rows, W, 3)``, split into ``threads`` parts applied concurrently."""
    import PyOpenColorIO as ocio

    def apply(part: np.ndarray) -> None:
        if how == "rows":
            cpu.apply(ocio.PackedImageDesc(part, part.shape[1], part.shape[0], 3))
        else:
            cpu.applyRGB(part.reshape(-1, 3))

    parts = np.array_split(packed, threads)
    workers = [threading.Thread(target=apply, args=(p,)) for p in parts[1:]]
    for w in workers:
        w.start()
    apply(parts[0])
    for w in workers:
        w.join()


def best_times(calls: dict, repeats: int, before=None) -> dict:
    """Best wall time of each callable over ``repeats`` rounds; ``before[name]()`` runs untimed first."""
    before = before or {}
    for name, fn in calls.items():
        before.get(name, lambda: None)()
        fn()  # warm-up
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for name, fn in calls.items():
            before.get(name, lambda: None)()
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def forward_calls(image, lut, packed_src, packed, cpus, args):
    out = torch.empty_like(image)
    calls, before = {}, {}
    for interp in args.interpolations:
        for how in ("rows", "applyRGB"):
            name, cpu = f"ocio {how}/{interp}", cpus[interp]
            calls[name] = lambda c=cpu, h=how: ocio_apply(c, packed, args.threads, h)
            before[name] = lambda: np.copyto(packed, packed_src)
        calls[f"lutkern/{interp}"] = lambda i=interp: lutkern.apply_lut(image, lut, interpolation=i)
        calls[f"lutkern/{interp} out="] = lambda i=interp: lutkern.apply_lut(
            image, lut, interpolation=i, out=out
        )
    return calls, before


def backward_calls(image, lut, args):
    grad_out = torch.randn_like(image)

    def fwd_bwd(fn):
        x, t = image.detach().requires_grad_(), lut.detach().requires_grad_()
        torch.autograd.grad(fn(x, t), (x, t), grad_out)

    def seed(x, t):
        return seed_grid_sample(x, t.expand(len(x), -1, -1, -1, -1))

    calls = {"grid_sample/trilinear": lambda: fwd_bwd(seed)}
    for interp in args.interpolations:
        calls[f"lutkern/{interp}"] = lambda i=interp: fwd_bwd(
            lambda x, t: lutkern.apply_lut(x, t, interpolation=i)
        )
    return calls


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    p.add_argument("--lut-size", type=int, default=33)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--interpolations", nargs="+", default=["trilinear", "tetrahedral"])
    p.add_argument("--no-backward", action="store_true", help="skip the forward+backward rows")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    n, (h, w), d = args.batch, args.size, args.lut_size
    image = torch.rand(n, 3, h, w, generator=g)
    lut = (lutkern.identity_lut(d) + 0.1 * torch.randn(d, d, d, 3, generator=g)).clamp(0, 1)
    packed_src = image.permute(0, 2, 3, 1).reshape(n * h, w, 3).contiguous().numpy()
    packed = packed_src.copy()
    pixels = n * h * w
    with tempfile.TemporaryDirectory() as tmp:
        cpus = {i: ocio_processor(lut, i, Path(tmp)) for i in args.interpolations}
    agree = []
    for interp in args.interpolations:
        np.copyto(packed, packed_src)
        ocio_apply(cpus[interp], packed, args.threads)
        ours = lutkern.apply_lut(image, lut, interpolation=interp).permute(0, 2, 3, 1).reshape(n * h, w, 3)
        agree.append(f"{interp} max |lutkern - ocio| {np.abs(ours.numpy() - packed).max():.1e}")
    import PyOpenColorIO as ocio

    print(f"# {n} x 3x{h}x{w} float32, one shared {d}^3 LUT, {args.threads} threads, best of {args.repeats}; "
          f"OpenColorIO {ocio.__version__}, torch {torch.__version__}; {'; '.join(agree)}")
    calls, before = forward_calls(image, lut, packed_src, packed, cpus, args)
    best = best_times(calls, args.repeats, before)
    print("| case | mode | time ms | Mpix/s | vs OCIO |")
    print("|---|---|---:|---:|---:|")
    for name, t in best.items():
        ref = best["ocio rows/" + name.split("/")[1].split()[0]]
        print(f"| {name} | fwd | {t * 1e3:.1f} | {pixels / t / 1e6:.0f} | {ref / t:.2f}x |")
    if not args.no_backward:
        best = best_times(backward_calls(image, lut, args), args.repeats)
        print("| case | mode | time ms | Mpix/s | vs grid_sample |")
        print("|---|---|---:|---:|---:|")
        for name, t in best.items():
            print(f"| {name} | fwd+bwd | {t * 1e3:.1f} | {pixels / t / 1e6:.0f} | "
                  f"{best['grid_sample/trilinear'] / t:.2f}x |")


if __name__ == "__main__":
    main()
