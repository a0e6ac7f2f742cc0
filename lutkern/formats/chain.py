"""A LUT file whose content is not one :class:`lutkern.CubeLUT`: a sequence of steps applied in order.

A ``.clf`` holds any sequence of Range, Matrix, LUT1D and LUT3D nodes; a ``.csp`` a per-channel
piecewise-linear pre-LUT with knots anywhere. :class:`LUTChain` holds them as steps, all in normalised
float (values scaled from a file's integer bit depths on reading):

- :class:`lutkern.CubeLUT`: a 1D table, a 3D table (``[b, g, r, c]``, applied with
  :func:`lutkern.apply_lut`), or both, each over its domain (inputs clamped to it);
- :class:`Matrix`: ``out = M[:, :3] @ rgb + M[:, 3]``;
- :class:`Range`: ``out = (clamp(x, min_in, max_in) - min_in) * scale + min_out`` (CLF's Range);
- :class:`Curves`: per channel, Cinespace's pre-LUT curve through knots ``(x, y)`` (linear for two knots,
  piecewise cubic for more), clamped at the end knots.

Images are ``(B,3,H,W)`` or ``(3,H,W)``, channels R, G, B on dim -3.
"""

from __future__ import annotations

import dataclasses

import torch

from ..cube import CubeLUT


@dataclasses.dataclass
class Matrix:
    """``matrix`` ``(3,4)`` float64: ``out_c = sum_k matrix[c, k] * in_k + matrix[c, 3]``."""

    matrix: torch.Tensor

    def __post_init__(self):
        if self.matrix.shape != (3, 4) or not torch.isfinite(self.matrix).all():
            raise ValueError(f"a Matrix step needs a finite (3,4) matrix, got {tuple(self.matrix.shape)}")

    def apply(self, x: torch.Tensor, **_) -> torch.Tensor:
        m = self.matrix.to(x.device, x.dtype)
        return torch.einsum("ck,...khw->...chw", m[:, :3], x) + m[:, 3].view(3, 1, 1)


@dataclasses.dataclass
class Range:
    """CLF's Range with both bounds: ``[min_in, max_in]`` mapped linearly onto ``[min_out, max_out]``,
    clamped to it when ``clamp`` (the CLF default), extrapolated otherwise. The same on all channels."""

    min_in: float
    max_in: float
    min_out: float
    max_out: float
    clamp: bool = True

    def __post_init__(self):
        if not self.min_in < self.max_in or not self.min_out < self.max_out:
            raise ValueError(
                f"a Range needs min < max, got in [{self.min_in}, {self.max_in}] "
                f"out [{self.min_out}, {self.max_out}]"
            )

    def apply(self, x: torch.Tensor, **_) -> torch.Tensor:
        scale = (self.max_out - self.min_out) / (self.max_in - self.min_in)
        y = x * scale + (self.min_out - self.min_in * scale)
        return y.clamp(self.min_out, self.max_out) if self.clamp else y


@dataclasses.dataclass
class Curves:
    """Per channel ``c``, the Cinespace pre-LUT curve through knots ``(x[c][i], y[c][i])``: ``x[c]``
    strictly increasing, at least 2 knots; an input below the first knot or above the last is clamped to
    it (a NaN gives NaN). With two knots the curve is a line; with more, each segment is the cubic of
    Cinespace's interpolator (as OpenColorIO reads ``.csp``): a Hermite cubic whose slope at an inner knot
    is the chord slope between its neighbours, ``(y[i+1] - y[i-1]) / (1 + d[i-1] / d[i])`` in the segment's
    units ``z = (t - x[i]) / d[i]``, and a quadratic in the first and last segments."""

    x: list[torch.Tensor]
    y: list[torch.Tensor]

    def __post_init__(self):
        if len(self.x) != 3 or len(self.y) != 3:
            raise ValueError("Curves needs one curve per channel")
        for c, (xs, ys) in enumerate(zip(self.x, self.y, strict=True)):
            if xs.dim() != 1 or xs.shape != ys.shape or xs.numel() < 2:
                raise ValueError(f"curve {c}: knots must be two 1-D tensors of the same length >= 2")
            if not (torch.isfinite(xs).all() and torch.isfinite(ys).all() and (xs[1:] > xs[:-1]).all()):
                raise ValueError(f"curve {c}: knots must be finite, x strictly increasing")

    @staticmethod
    def coefficients(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """``(n-1, 4)``: ``a, b, c, d`` of each segment, ``y = a + b z + c z^2 + d z^3``."""
        f0, f1 = ys[:-1], ys[1:]
        if len(xs) == 2:
            return torch.stack([f0, f1 - f0, torch.zeros_like(f0), torch.zeros_like(f0)], dim=1)
        delta = xs[1:] - xs[:-1]
        slope_in = torch.zeros_like(f0)  # at the segment's left knot (none for the first segment)
        slope_in[1:] = (ys[2:] - ys[:-2]) / (1 + delta[:-1] / delta[1:])
        slope_out = torch.zeros_like(f0)  # at its right knot (none for the last segment)
        slope_out[:-1] = (ys[2:] - ys[:-2]) / (1 + delta[1:] / delta[:-1])
        a, b = f0.clone(), slope_in.clone()
        c = -3 * f0 - 2 * slope_in + 3 * f1 - slope_out
        d = 2 * f0 + slope_in - 2 * f1 + slope_out
        b[0], c[0], d[0] = -2 * f0[0] + 2 * f1[0] - slope_out[0], f0[0] - f1[0] + slope_out[0], 0
        b[-1], c[-1], d[-1] = slope_in[-1], -f0[-1] + f1[-1] - slope_in[-1], 0
        return torch.stack([a, b, c, d], dim=1)

    def apply(self, x: torch.Tensor, **_) -> torch.Tensor:
        out = []
        for c in range(3):
            xs, ys = self.x[c].to(x.device, torch.float64), self.y[c].to(x.device, torch.float64)
            coef = self.coefficients(xs, ys).to(x.dtype)
            xs = xs.to(x.dtype)
            t = torch.minimum(torch.maximum(x[..., c, :, :], xs[0]), xs[-1])
            i = (
                torch.searchsorted(xs, t.detach().nan_to_num(0).contiguous(), right=True).clamp(
                    1, len(xs) - 1
                )
                - 1
            )
            z = (t - xs[i]) / (xs[i + 1] - xs[i])
            a, b, cc, d = coef[i].unbind(-1)
            out.append(a + z * (b + z * (cc + d * z)))
        return torch.stack(out, dim=-3)

    @property
    def domain(self):
        return (tuple(float(xs[0]) for xs in self.x), tuple(float(xs[-1]) for xs in self.x))


Step = CubeLUT | Matrix | Range | Curves


@dataclasses.dataclass
class LUTChain:
    """Steps applied in order (see the module docstring); ``title`` and ``comments`` as in a CubeLUT.
    ``interpolations``: step index -> the interpolation a file fixes for that 3D table (CLF's
    ``interpolation`` attribute), which wins over the caller's, as in OpenColorIO."""

    steps: list[Step]
    title: str | None = None
    comments: list[str] = dataclasses.field(default_factory=list)
    interpolations: dict[int, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.steps:
            raise ValueError("a LUTChain needs at least one step")
        for s in self.steps:
            if not isinstance(s, CubeLUT | Matrix | Range | Curves):
                raise ValueError(f"not a LUTChain step: {type(s).__name__}")

    def apply(self, image: torch.Tensor, *, interpolation: str = "trilinear", backend: str | None = None):
        """Each step in turn; ``interpolation`` and ``backend`` go to the 3D tables' :func:`apply_lut`."""
        x = image
        for i, step in enumerate(self.steps):
            x = step.apply(x, interpolation=self.interpolations.get(i, interpolation), backend=backend)
        return x

    def as_cube(self) -> CubeLUT | None:
        """The chain as one CubeLUT where it is one: an optional 1D table then an optional 3D table, each
        alone on [0, 1] or after the steps that map a domain onto [0, 1] (a clamping Range onto [0, 1],
        or a diagonal Matrix and such a Range), which is how a CubeLUT is written as a ``.clf``; else
        None. The interpolation a file fixes is not carried (a CubeLUT has none)."""
        if self.interpolations:
            return None
        tables: list[tuple[CubeLUT, tuple]] = []
        domain, steps = None, list(self.steps)
        unit = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        while steps:
            step = steps.pop(0)
            if isinstance(step, Matrix) and domain is None and steps and _unit_range(steps[0]):
                m = step.matrix
                if (m[:, :3] - torch.diag(torch.diagonal(m[:, :3]))).abs().max() > 0 or (
                    m.diagonal() <= 0
                ).any():
                    return None
                scale, offset = m.diagonal()[:3], m[:, 3]
                domain = (tuple((-offset / scale + 0.0).tolist()), tuple(((1 - offset) / scale).tolist()))
                steps.pop(0)
            elif (
                isinstance(step, Range)
                and domain is None
                and step.clamp
                and (step.min_out, step.max_out) == (0, 1)
            ):
                domain = ((step.min_in,) * 3, (step.max_in,) * 3)
            elif isinstance(step, CubeLUT) and (step.shaper is None) != (step.lut3d is None):
                own = step.shaper_domain if step.shaper is not None else step.lut3d_domain
                if domain is not None and tuple(map(tuple, own)) != unit:
                    return None
                tables.append((step, domain or own))
                domain = None
            else:
                return None
        if domain is not None or not tables or len(tables) > 2:
            return None
        shaper = [(t, d) for t, d in tables if t.shaper is not None]
        lut3d = [(t, d) for t, d in tables if t.lut3d is not None]
        if len(shaper) > 1 or len(lut3d) > 1 or (shaper and lut3d and tables[0][0].lut3d is not None):
            return None
        try:
            return CubeLUT(
                lut3d[0][0].lut3d if lut3d else None,
                shaper[0][0].shaper if shaper else None,
                shaper_domain=shaper[0][1] if shaper else unit,
                lut3d_domain=lut3d[0][1] if lut3d else unit,
                title=self.title,
                comments=list(self.comments),
            )
        except ValueError:  # a domain float32 cannot use
            return None

    @property
    def input_domain(self):
        """``(min_rgb, max_rgb)`` the first step clamps its input to, or None where it clamps nothing (a
        Matrix, an unclamped Range)."""
        first = self.steps[0]
        if isinstance(first, CubeLUT):
            return first.shaper_domain if first.shaper is not None else first.lut3d_domain
        if isinstance(first, Curves):
            return first.domain
        if isinstance(first, Range) and first.clamp:
            return (first.min_in,) * 3, (first.max_in,) * 3
        return None


def _unit_range(step) -> bool:
    """Whether ``step`` clamps to [0, 1] and changes nothing else."""
    return (
        isinstance(step, Range)
        and step.clamp
        and (step.min_in, step.max_in, step.min_out, step.max_out) == (0, 1, 0, 1)
    )
