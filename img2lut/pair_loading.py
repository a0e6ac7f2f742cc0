"""Decoding a set of pairs: at training size (:mod:`img2lut.decoding`), in worker processes, once
(:mod:`img2lut.pair_cache`), held as codes (:class:`img2lut.codes.Codes`).

:func:`load_pairs` takes what the cache holds for the pairs whose two files are unchanged, decodes the
others in a pool of worker processes (every core, a bounded number of pairs in flight; ``spawn`` or
``forkserver`` processes, never ``fork``: the caller may hold threads and a process group), and writes
the pack again when anything was decoded. With the cache, the codes are memory-mapped from it: a set
larger than memory is read as batches ask for it. Without it they are held in memory.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from . import distributed, pair_cache
from .codes import Codes
from .data import DataError, PairedImages, PairFiles, _naming, physical_memory
from .decoding import OVERSAMPLE, SizedImage, decode_at_size

# Changes whenever decoding changes what it gives for a file: packs of other versions are not used.
DECODER = 1
# Fewer pairs to decode than this are decoded in this process: starting the workers costs a few seconds
# (one import of torch, in the fork server).
MIN_POOL_PAIRS = 32


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def decode_pair(pair: PairFiles, size: int) -> tuple[SizedImage, SizedImage]:
    """Both images of ``pair`` at ``size``; DataError naming the file that cannot be read, or both files
    when they differ in size (pixel i of one would not be pixel i of the other)."""
    sides = []
    for path in (pair.input, pair.target):
        try:
            sides.append(decode_at_size(path, size))
        except (OSError, ValueError) as exc:
            raise _naming(path, exc, "cannot read image ({})") from None
    (wa, ha), (wb, hb) = sides[0].full_size, sides[1].full_size
    if (wa, ha) != (wb, hb):
        raise DataError(f"{pair.input} is {wa}x{ha} but {pair.target} is {wb}x{hb}; a pair must have the "
                        "same size")
    return sides[0], sides[1]


def _one_thread() -> None:
    """A worker's torch uses one thread: the workers are the parallelism."""
    torch.set_num_threads(1)


def _decoded(jobs: list[tuple[int, PairFiles]], size: int, workers: int
             ) -> Iterator[tuple[int, SizedImage, SizedImage]]:
    """``(i, input, target)`` for every job, in the order they finish."""
    if workers <= 1 or len(jobs) < MIN_POOL_PAIRS:
        for i, pair in jobs:
            yield i, *decode_pair(pair, size)
        return
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # The server imports torch and the decoders once; each worker is a fork of it, ready at once.
        context.set_forkserver_preload([__name__])
    else:
        context = multiprocessing.get_context("spawn")
    pending: set[cf.Future] = set()
    todo = iter(jobs)
    with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        try:
            while True:
                for i, pair in todo:  # at most two pairs per worker in flight: memory stays bounded
                    future = pool.submit(decode_pair, pair, size)
                    future.index = i
                    pending.add(future)
                    if len(pending) >= 2 * workers:
                        break
                if not pending:
                    return
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: f.index):
                    yield future.index, *future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.1f} pairs/s" if task.speed else "")


def decode_progress(console: Console, what: str = "decoding pairs") -> Progress:
    """A progress bar with the rate and the time left, for :func:`load_pairs`'s ``progress``; shown only
    on a terminal."""
    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), _Rate(), TimeElapsedColumn(),
               TextColumn("left"), TimeRemainingColumn())
    return Progress(*columns, console=console, transient=True, disable=not console.is_terminal)


def load_sets(sets: list[list[PairFiles]], image_size: int, console: Console,
              cache: Path | None) -> list[PairedImages]:
    """:func:`load_pairs` of each list of pairs, with a progress bar on ``console``. Under torchrun with
    the cache, rank 0 decodes while the other ranks wait, then they map what it wrote (each reading only
    the pairs its batches take)."""
    ctx = distributed.current()
    if cache is not None and ctx.world_size > 1 and not ctx.is_main:
        distributed.barrier(ctx)
    loaded = []
    with decode_progress(console) as bar:
        for pairs in sets:
            task = bar.add_task("", total=len(pairs))
            loaded.append(load_pairs(pairs, image_size, lambda i, t=task: bar.update(t, completed=i + 1),
                                     cache=cache))
    if cache is not None and ctx.world_size > 1 and ctx.is_main:
        distributed.barrier(ctx)
    return loaded


def load_pairs(pairs: list[PairFiles], image_size: int, progress: Callable[[int], None] | None = None, *,
               cache: Path | None = None, workers: int | None = None) -> PairedImages:
    """Decode every pair at ``image_size`` (or take it from the cache in ``cache``, a folder; None: no
    cache); ``progress(i)`` is called once ``i + 1`` pairs are ready.

    A pair whose two files differ in size is a DataError naming both. Without the cache, so is a set
    whose codes would not fit in this machine's memory (at least one byte per sample), before anything
    is decoded; with it, the codes are memory-mapped and any size works.
    """
    shape = (3, image_size, image_size)
    if cache is None:
        need = len(pairs) * 2 * int(np.prod(shape))
        total = physical_memory()
        if total is not None and need > total:
            raise DataError(f"{len(pairs)} pairs at {image_size}x{image_size} need {need / 2**30:.1f} GiB in "
                            f"memory, more than this machine's {total / 2**30:.1f} GiB: use the pair cache "
                            "(drop --no-cache), or a smaller --image-size")
    ids = [(pair_cache.identity(p.input), pair_cache.identity(p.target)) for p in pairs]
    settings = {"image_size": image_size, "oversample": OVERSAMPLE, "decoder": DECODER}
    key = old = None
    if cache is not None and pairs:
        key = pair_cache.pack_key((pairs[0].input.parent, pairs[0].target.parent), settings)
        try:
            old = pair_cache.read_pack(cache, key, settings)
        except pair_cache.DamagedCache as exc:
            warnings.warn(f"the pair cache {exc}; decoding the pairs again", stacklevel=2)
    kept = {}
    if old is not None:
        for i, (pair, (a, b)) in enumerate(zip(pairs, ids, strict=True)):
            entry = old.pairs.get(pair.name)
            if entry is not None and a is not None and [entry["input"], entry["target"]] == [a, b]:
                kept[i] = entry
    if old is not None and len(kept) == len(pairs):
        rows = [kept[i]["row"] for i in range(len(pairs))]
        if progress is not None:
            progress(len(pairs) - 1)
        return _paired(pairs, old.arrays, {s: _scales(old.pairs.values(), s, len(old.pairs)) for s in
                                           pair_cache.SIDES}, rows, (cache, key, old.build))
    try:
        return _decode(pairs, ids, kept, old, shape, settings, cache, key, progress,
                       workers or default_workers())
    except OSError as exc:  # the images' own errors are DataErrors: this is the cache's folder
        raise DataError(f"cannot write the pair cache in {cache} ({exc}); give another --cache-dir, or "
                        "--no-cache") from None


def _scales(entries, side: str, rows: int) -> np.ndarray:
    scales = np.ones(rows, dtype=np.float32)
    k = pair_cache.SIDES.index(side)
    for entry in entries:
        scales[entry["row"]] = entry["scales"][k]
    return scales


def _paired(pairs: list[PairFiles], arrays: dict, scales: dict, rows: list[int],
            pack: tuple | None = None) -> PairedImages:
    """The pairs as codes; ``pack``: ``(root, key, build)`` of the pack they were read from, if any."""
    return PairedImages([p.name for p in pairs], *(
        Codes(arrays[side], scales[side], rows, pair_cache.Origin(*pack, side) if pack else None)
        for side in pair_cache.SIDES))


def _decode(pairs, ids, kept, old, shape, settings, cache, key, progress, workers) -> PairedImages:
    """Decode the pairs not in ``kept`` (copying those that are from ``old``) into a new pack (or, without
    the cache, into memory)."""
    n = len(pairs)
    entries = [{"name": p.name, "input": a, "target": b, "row": i, "scales": [1.0, 1.0], "full_size": None}
               for i, (p, (a, b)) in enumerate(zip(pairs, ids, strict=True))]
    writer = pair_cache.PackWriter(cache, key, n, shape) if cache is not None else None
    with writer if writer is not None else contextlib.nullcontext():
        regions = writer.regions if writer is not None else {s: pair_cache.Region(n, shape) for s in
                                                              pair_cache.SIDES}
        done = 0
        for i, entry in kept.items():
            for side in pair_cache.SIDES:
                regions[side].put(i, old.arrays[side][entry["row"]])
            entries[i].update(scales=entry["scales"], full_size=entry["full_size"])
            done += 1
            if progress is not None:
                progress(done - 1)
        jobs = [(i, pairs[i]) for i in range(n) if i not in kept]
        for i, a, b in _decoded(jobs, shape[-1], workers):
            regions["inputs"].put(i, a.codes)
            regions["targets"].put(i, b.codes)
            entries[i].update(scales=[a.scale, b.scale], full_size=list(a.full_size))
            done += 1
            if progress is not None:
                progress(done - 1)
        if writer is not None:
            arrays = writer.commit(settings, entries)
        else:
            arrays = {side: regions[side].finish() for side in pair_cache.SIDES}
    scales = {side: np.array([e["scales"][k] for e in entries], dtype=np.float32)
              for k, side in enumerate(pair_cache.SIDES)}
    return _paired(pairs, arrays, scales, list(range(n)),
                   (cache, key, writer.build.hex()) if writer is not None else None)
