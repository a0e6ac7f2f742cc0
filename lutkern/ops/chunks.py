"""The work plan of the CPU loops (the compiled one and eager torch): pixels in chunks, chunks spread over
worker threads by a fixed plan in which every LUT-gradient accumulator has a single writer, so results
are deterministic whatever the thread timing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

Job = tuple[int, int, slice]  # (image, LUT index, pixel slice)


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 when any of ``tensors`` is float64, else float32: what the loops compute in."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def schedule(n: int, m: int, pixels: int, device: torch.device, chunk: int,
             min_work: int = 0) -> list[list[Job]]:
    """Chunks of ``chunk`` pixels per worker for ``n`` images of ``pixels`` pixels and ``m`` LUTs (1:
    shared), in a fixed order (so results are deterministic).

    With one LUT per image, whole images go to one worker, so each LUT's gradient has a single writer.
    With a shared LUT, chunks are dealt round-robin and every worker accumulates its own LUT gradient.
    Off the CPU there is one worker. A worker gets at least ``min_work`` pixels (fewer workers for small
    calls: a thread costs ~0.2 ms).
    """
    jobs = [
        (i, i if m > 1 else 0, slice(p, min(p + chunk, pixels)))
        for i in range(n)
        for p in range(0, pixels, chunk)
    ]
    workers = min(torch.get_num_threads() if device.type == "cpu" else 1, n if m > 1 else len(jobs))
    workers = max(1, min(workers, n * pixels // min_work) if min_work else workers)
    if m > 1:
        return [[job for job in jobs if job[0] % workers == w] for w in range(workers)]
    return [jobs[w::workers] for w in range(workers)]


def run_plan(fn, plan: list[list[Job]]) -> None:
    """Call ``fn(worker, job)`` for every job of every worker, workers in parallel threads."""
    if len(plan) == 1:
        for job in plan[0]:
            fn(0, job)
        return

    def worker(w: int) -> None:
        # Grad mode and the intra-op thread count are per-thread settings: a new thread records autograd
        # history by default, and its ops run single-threaded here because the parallelism is across chunks.
        torch.set_num_threads(1)
        with torch.no_grad():
            for job in plan[w]:
                fn(w, job)

    with ThreadPoolExecutor(len(plan)) as pool:
        for fut in [pool.submit(worker, w) for w in range(len(plan))]:
            fut.result()
