"""Images held as compact codes, converted to float32 a batch at a time.

A decoded training set is kept as the codes :func:`img2lut.decoding.decode_at_size` returns (uint8 for
8-bit sources, uint16 for deeper ones, float32 for EXR), never as float32 copies: 5,000 pairs at 256x256
are 2 GB of 8-bit codes where float32 would be 7.9 GB. The array may be a ``np.memmap`` of the pair cache
(:mod:`img2lut.pair_cache`): then a set larger than memory is read from disk as batches ask for it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch

# Images made float at a time where a whole set is read (statistics, corrections, the diagnosis).
BATCH = 64
# Narrowest first: an array holding codes of several kinds takes the widest.
DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


def wider(a: np.dtype, b: np.dtype) -> np.dtype:
    """The dtype of :data:`DTYPES` that holds codes of both ``a`` and ``b`` exactly."""
    return max(np.dtype(a), np.dtype(b), key=DTYPES.index)


class Codes:
    """``N`` images ``(3,S,S)`` as codes; item ``i``'s values are ``array[index[i]] / scales[index[i]]``.

    array: ``(M,3,S,S)`` uint8, uint16 or float32, in memory or memory-mapped (read only here).
    scales: ``(M,)`` float32, the code of value 1 of each row: 255, 1023, 4095 or 65535 for integer codes
        (a row keeps its own: 10-bit codes at their size stay exact), 1 for float values.
    index: which rows, in order (a subset shares the array: no copy).
    origin: where the array comes from when it is a pack of the pair cache (a
        :class:`img2lut.pair_cache.Origin`; None otherwise): what lets results computed from these codes
        be kept beside the pack (:mod:`img2lut.pack_results`). Subsets keep it.

    Indexing with an int, a slice, a list or a tensor of indices (and optionally more axes, as a tensor
    would take them) gives float32 tensors: ``codes[idx]`` is ``(B,3,S,S)``, ``codes[i]`` ``(3,S,S)``.
    """

    def __init__(self, array: np.ndarray, scales: np.ndarray, index: np.ndarray | None = None,
                 origin=None):
        self.array, self.scales = array, np.asarray(scales, dtype=np.float32)
        self.index = np.arange(len(array)) if index is None else np.asarray(index, dtype=np.int64)
        self.origin = origin

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.array.shape[1:]))

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the codes (not of the float32 tensors indexing gives)."""
        return self.array.dtype

    @property
    def nbytes(self) -> int:
        return len(self) * int(np.prod(self.array.shape[1:])) * self.array.dtype.itemsize

    def __getitem__(self, key) -> torch.Tensor:
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(first, torch.Tensor):
            first = first.cpu().numpy()
        rows = self.index[first]
        if np.ndim(rows) == 0:
            return self._float(self.array[rows][None], rows[None])[0][rest]
        order = np.argsort(rows, kind="stable")  # a memory map reads best in file order
        values = torch.empty((len(rows), *self.array.shape[1:]), dtype=torch.float32)
        values[torch.from_numpy(order)] = self._float(self.array[rows[order]], rows[order])
        return values[(slice(None), *rest)]

    def _float(self, codes: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        """``(B,3,...)`` codes of the array's ``rows`` ``(B,)`` -> float32 values (a new tensor, never a
        view of a memory map)."""
        values = torch.from_numpy(np.array(codes, dtype=np.float32))
        scales = self.scales[rows]
        if np.any(scales != 1):
            values /= torch.from_numpy(np.array(scales)).view(-1, *([1] * (values.dim() - 1)))
        return values

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(len(self)):
            yield self[i]

    def batches(self, size: int = BATCH) -> Iterator[torch.Tensor]:
        """The images as float32 ``(B,3,S,S)`` tensors of at most ``size``, in order."""
        for start in range(0, len(self), size):
            yield self[start:start + size]

    def tensor(self) -> torch.Tensor:
        """All of them as one float32 ``(N,3,S,S)`` tensor (for sets known to be small)."""
        return self[:]

    def pixels(self, flat) -> torch.Tensor:
        """``(3,P)`` float32 values of the pixels ``flat`` ``(P,)`` (int64), numbered over the images in
        order, each image's pixels in row-major order: pixel ``j`` of image ``i`` is ``i * H * W + j``.
        Only those pixels are read (from a memory map: the pages they lie on)."""
        flat = flat.cpu().numpy() if isinstance(flat, torch.Tensor) else np.asarray(flat, dtype=np.int64)
        height, width = self.array.shape[2:]
        image, pixel = np.divmod(flat, height * width)
        rows = self.index[image]
        return self._float(self.array[rows, :, pixel // width, pixel % width], rows).T

    def subset(self, indices) -> Codes:
        """The images ``indices`` (positions in this set), sharing the array (and what a subclass adds)."""
        out = copy.copy(self)
        out.index = self.index[np.asarray(indices, dtype=np.int64)]
        return out
