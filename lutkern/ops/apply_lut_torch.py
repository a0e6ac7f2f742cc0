"""LUT application in eager torch ops: the torch backend off the CPU, and on the CPU when its compiled loop
(:mod:`lutkern.ops.apply_lut_cpu`) cannot be built or is switched off (``LUTKERN_NATIVE=0``).

Same function as :func:`lutkern.reference.apply.apply_lut_reference` (same clamping, NaN and tie rules),
built for speed on a few CPU cores:

- Pixels are processed in chunks of ``CHUNK`` so that temporaries stay in cache and peak memory is
  bounded by the chunk, not by the batch. Chunks are spread over ``torch.get_num_threads()`` Python
  threads (torch releases the GIL inside ops) by a fixed plan in which every LUT-gradient accumulator
  has a single writer (:func:`lutkern.ops.chunks.schedule`), so results are deterministic.
- Everything is channel-first: the K corners of every pixel's cell come from one ``index_select``
  along the lattice axis of the LUT seen as ``(3, D^3)``, and the blends are contiguous elementwise
  ops (the trilinear blend is three lerps over ``(3,2,2,2,P)`` halves).
- The backward is written by hand and recomputes the cell per chunk (only the inputs are saved): the
  LUT gradient is one ``scatter_add_`` of ``weight * grad_out`` over all corners, the image gradient
  the derivative of the dot products ``<grad_out, corner>`` along the cell's edges (the true derivative
  of the piecewise-linear map).

Computation runs in float32 (float64 when the image or the LUT is float64); the output has the image's
dtype. First-order gradients only (no double backward).
"""

from __future__ import annotations

import torch

from .chunks import compute_dtype, run_plan, schedule

CHUNK = 1 << 14  # pixels per chunk on CPU: a (3, CHUNK) fp32 temporary is 192 KiB, a few dozen fit in L2
# Elsewhere (the torch backend forced on a GPU) small chunks would only add kernel launches.
CHUNK_OTHER_DEVICES = 1 << 22


def _chunk(device: torch.device) -> int:
    return CHUNK if device.type == "cpu" else CHUNK_OTHER_DEVICES


class _ChannelFirst:
    """LUT ``m`` of ``(M,D,D,D,3)`` as ``(3,D^3)`` (flat index ``(b*D + g)*D + r``) in the compute dtype.

    Converted per LUT when first needed and kept per worker (a worker's chunks of one image are
    consecutive), so the copies take a few LUTs of memory instead of a whole batch of them.
    """

    def __init__(self, lut: torch.Tensor, dtype: torch.dtype):
        self.lut, self.dtype, self.cache = lut, dtype, {}

    def __call__(self, worker: int, m: int) -> torch.Tensor:
        held = self.cache.get(worker)
        if held is None or held[0] != m:
            d3 = self.lut.shape[1] ** 3
            held = (m, self.lut[m].reshape(d3, 3).t().to(self.dtype).contiguous())
            self.cache[worker] = held
        return held[1]


def _scaled(x: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunk ``(3,P)`` -> (lattice coordinates in [0, D-1], NaN-pixel mask ``(P,)`` or None if no NaN).

    NaN channels are replaced by 0 so no index is out of range (the pixel is set to NaN afterwards);
    +-inf clamp to the edges. The per-pixel mask costs as much as the interpolation's index maths, so it
    is only built when the chunk's sum is NaN (a NaN, or inf - inf).
    """
    nan = torch.isnan(x).any(0) if torch.isnan(x.sum()) else None
    return torch.nan_to_num(x, nan=0.0).clamp_(0, 1).mul_(d - 1), nan


class _Cell:
    """The lattice cell of every pixel of a chunk: corner indices ``idx`` ``(K,P)`` and weights ``(K,P)``.

    ``s`` are lattice coordinates ``(3,P)`` (rows r, g, b); ``out = sum_k weights()[k] * lut[idx[k]]``.
    All K corners are handled by one op each (one gather, one scatter): per-op overhead, not arithmetic,
    dominates at chunk sizes that fit in cache. Trilinear and tetrahedral use the cell with origin
    ``min(floor(s), D-2)``, so a coordinate exactly at the top edge uses the last cell's slope.
    """

    def __init__(self, s: torch.Tensor, d: int, interpolation: str):
        self.interpolation = interpolation
        if interpolation == "nearest":
            q = torch.round(s)  # ties to even, as the reference
            self.idx = ((q[2] * d + q[1]) * d + q[0]).int().unsqueeze(0)
            return
        i0 = s.floor().clamp_(max=d - 2)
        self.f = s - i0
        fr, fg, fb = self.f.unbind(0)
        # Float arithmetic on integers < 2^24 is exact, and one conversion is cheaper than int64 maths.
        base = (i0[2] * d + i0[1]) * d + i0[0]
        if interpolation == "trilinear":
            # Corner k = dr + 2*dg + 4*db, i.e. idx.view(2, 2, 2, P) is indexed [db, dg, dr].
            offsets = [dr + dg * d + db * d * d for db in (0, 1) for dg in (0, 1) for dr in (0, 1)]
            self.idx = (base + base.new_tensor(offsets).unsqueeze(1)).int()
            return
        # Tetrahedral: walk c000 -> (largest step) -> (two largest steps) -> c111. Ties are ordered r, g, b
        # (a stable descending sort): the same six tetrahedra, boundaries included, as the reference.
        # Selections are min/max (exact) and 0/1 float masks: measured ~2x cheaper than bool masks + where.
        f_max = torch.maximum(torch.maximum(fr, fg), fb)
        f_min = torch.minimum(torch.minimum(fr, fg), fb)
        f_mid = torch.maximum(torch.minimum(fr, fg), torch.minimum(torch.maximum(fr, fg), fb))
        big_r = (fr == f_max).to(s.dtype)
        big_g = (fg == f_max).to(s.dtype) * (1 - big_r)
        small_b = (fb == f_min).to(s.dtype)
        small_g = (fg == f_min).to(s.dtype) * (1 - small_b)
        # Per axis r, g, b: 1 where that axis has the largest / smallest / middle fraction.
        self.big = (big_r, big_g, 1 - big_r - big_g)
        self.small = (1 - small_b - small_g, small_g, small_b)
        self.mid = tuple(1 - b - m for b, m in zip(self.big, self.small, strict=True))
        off_a = self.big[0] + self.big[1] * d + self.big[2] * (d * d)
        off_b = (1 + d + d * d) - (self.small[0] + self.small[1] * d + self.small[2] * (d * d))
        self.idx = torch.stack([base, base + off_a, base + off_b, base + (1 + d + d * d)]).int()
        self.tetra_weights = torch.stack([1 - f_max, f_max - f_mid, f_mid - f_min, f_min])

    def weights(self) -> torch.Tensor | None:
        """Weight ``(K,P)`` of each corner in ``idx`` (None for nearest: weight 1)."""
        if self.interpolation == "nearest":
            return None
        if self.interpolation == "tetrahedral":
            return self.tetra_weights
        w = torch.stack([1 - self.f, self.f], dim=1)  # (3 axes, 2, P)
        return (w[2][:, None, None] * w[1][None, :, None] * w[0][None, None, :]).reshape(8, -1)

    def corners(self, lut_cf: torch.Tensor) -> torch.Tensor:
        """Corner values ``(3,K,P)`` from a channel-first LUT ``(3,D^3)``."""
        k, p = self.idx.shape
        return lut_cf.index_select(1, self.idx.view(-1)).view(3, k, p)

    def blend(self, c: torch.Tensor) -> torch.Tensor:
        """Interpolated ``(3,P)`` from corners ``(3,K,P)``."""
        if self.interpolation == "nearest":
            return c[:, 0]
        if self.interpolation == "tetrahedral":  # multiply-adds: faster than a sum over the corner dim
            w = self.tetra_weights
            out = c[:, 0] * w[0]
            for k in (1, 2, 3):
                out.addcmul_(c[:, k], w[k])
            return out
        fr, fg, fb = self.f.unbind(0)
        c = c.view(3, 2, 2, 2, -1)  # [channel, db, dg, dr, pixel]
        a = torch.lerp(c[:, :, :, 0], c[:, :, :, 1], fr)
        b = torch.lerp(a[:, :, 0], a[:, :, 1], fg)
        return torch.lerp(b[:, 0], b[:, 1], fb)

    def coordinate_grad(self, c: torch.Tensor, go: torch.Tensor) -> torch.Tensor:
        """d(loss)/d(lattice coordinate) ``(3,P)`` for corners ``(3,K,P)`` and upstream gradient ``(3,P)``."""
        # The map is linear in the corner values, so differentiate the dot products <go, corner k> directly.
        dots = c[0] * go[0]  # (K,P); multiply-adds avoid a (3,K,P) temporary
        dots.addcmul_(c[1], go[1]).addcmul_(c[2], go[2])
        if self.interpolation == "tetrahedral":
            # The largest fraction moves along c000->ca, the middle ca->cb, the smallest cb->c111.
            steps = dots[1:] - dots[:-1]
            masks = zip(self.big, self.mid, self.small, strict=True)
            return torch.stack([b * steps[0] + m * steps[1] + sm * steps[2] for b, m, sm in masks])
        fr, fg, fb = self.f.unbind(0)
        t = dots.view(2, 2, 2, -1)  # [db, dg, dr, pixel]
        along_r = torch.lerp(t[:, :, 0], t[:, :, 1], fr)  # [db, dg]
        d_r = t[:, :, 1] - t[:, :, 0]
        d_r = torch.lerp(d_r[:, 0], d_r[:, 1], fg)
        d_g = along_r[:, 1] - along_r[:, 0]
        along_g = torch.lerp(along_r[:, 0], along_r[:, 1], fg)
        return torch.stack(
            [torch.lerp(d_r[0], d_r[1], fb), torch.lerp(d_g[0], d_g[1], fb), along_g[1] - along_g[0]]
        )


class ApplyLutTorch(torch.autograd.Function):
    """``image (N,3,H,W)``, ``lut (N|1,D,D,D,3)`` -> ``(N,3,H,W)`` in the image's dtype."""

    @staticmethod
    def forward(ctx, image: torch.Tensor, lut: torch.Tensor, interpolation: str) -> torch.Tensor:
        n, _, h, w = image.shape
        d = lut.shape[1]
        dtype = compute_dtype(image, lut)
        lut_cf = _ChannelFirst(lut, dtype)
        src = image.reshape(n, 3, h * w)
        out = torch.empty_like(src)

        def chunk(wk, job):
            i, m, sl = job
            s, nan = _scaled(src[i, :, sl].to(dtype), d)
            cell = _Cell(s, d, interpolation)
            res = cell.blend(cell.corners(lut_cf(wk, m)))
            out[i, :, sl] = res if nan is None else res.masked_fill(nan, float("nan"))

        run_plan(chunk, schedule(n, lut.shape[0], h * w, image.device, _chunk(image.device)))
        ctx.save_for_backward(image, lut)
        ctx.interpolation = interpolation
        return out.view(n, 3, h, w)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        image, lut = ctx.saved_tensors
        interpolation = ctx.interpolation
        need_image, need_lut = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n, _, h, w = image.shape
        m, d = lut.shape[0], lut.shape[1]
        dtype = compute_dtype(image, lut)
        lut_cf = _ChannelFirst(lut, dtype)
        src = image.reshape(n, 3, h * w)
        gsrc = grad_out.reshape(n, 3, h * w)
        plan = schedule(n, m, h * w, image.device, _chunk(image.device))
        # LUT gradient in fp32/fp64, channel-first; a shared LUT gets one accumulator per worker (summed in a
        # fixed order afterwards): deterministic without atomics or locks.
        acc_shape = (len(plan) if m == 1 else 1, m, 3, d * d * d)
        acc = torch.zeros(acc_shape, dtype=dtype, device=lut.device) if need_lut else None
        # Every chunk writes its slice, so no zero fill.
        grad_image = torch.empty_like(src) if need_image and interpolation != "nearest" else None

        def chunk(wk, job):
            i, mi, sl = job
            x = src[i, :, sl].to(dtype)
            s, nan = _scaled(x, d)
            go = gsrc[i, :, sl].to(dtype)
            if nan is not None:
                go = go.masked_fill(nan, 0.0)  # NaN pixels contribute nothing
            cell = _Cell(s, d, interpolation)
            if need_lut:
                wgt = cell.weights()
                contrib = go if wgt is None else (go.unsqueeze(1) * wgt).view(3, -1)
                acc[wk if m == 1 else 0, mi].scatter_add_(
                    1, cell.idx.view(1, -1).long().expand(3, -1), contrib
                )
            if grad_image is not None:
                gcoord = cell.coordinate_grad(cell.corners(lut_cf(wk, mi)), go).mul_(d - 1)
                # torch.clamp's gradient mask: passes where 0 <= x <= 1 (not at NaN or beyond the edges).
                grad_image[i, :, sl] = gcoord.mul_(x.clamp(0, 1) == x)

        run_plan(chunk, plan)
        grad_lut = None
        if need_lut:
            # A strided view, not a copy: (M,3,D^3) seen as (M,D,D,D,3).
            total = acc[0] if acc.shape[0] == 1 else acc.sum(0)
            grad_lut = total.transpose(1, 2).reshape(lut.shape).to(lut.dtype)
        if need_image:
            grad_image = torch.zeros_like(image) if grad_image is None else grad_image.view(image.shape)
        return grad_image if need_image else None, grad_lut, None


def apply_lut_torch(image: torch.Tensor, lut: torch.Tensor, interpolation: str = "trilinear") -> torch.Tensor:
    """Apply ``lut`` ``(N|1,D,D,D,3)`` to ``image`` ``(N,3,H,W)`` (validated by the caller)."""
    return ApplyLutTorch.apply(image.contiguous(), lut.contiguous(), interpolation)
