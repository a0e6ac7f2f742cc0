"""Pictures drawn with Pillow: the loss curve, the input | target | output preview grid, error maps.
The only module that draws."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from lutkern.files import atomic_open

_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))
ERROR_MAP_MAX = 10.0  # CIEDE2000 at which the error map saturates (about an obvious difference)


def to_pil(image: torch.Tensor) -> Image.Image:
    """``(3,H,W)`` float in [0,1] (clamped) -> 8-bit RGB Pillow image."""
    codes = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(codes.permute(1, 2, 0).cpu().numpy(), "RGB")


def error_map(delta_e: torch.Tensor, top: float = ERROR_MAP_MAX) -> torch.Tensor:
    """``(3,H,W)`` RGB in [0,1] for a ``(H,W)`` error: black at 0, red, yellow, white at ``top`` and above."""
    v = (delta_e.float() / top).clamp(0, 1) * 3
    return torch.stack([v.clamp(0, 1), (v - 1).clamp(0, 1), (v - 2).clamp(0, 1)])


def _save(image: Image.Image, path: Path) -> None:
    """Save atomically (a killed run leaves the old file or the new one), format by extension."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: not an image file extension (use .png)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        image.save(f, fmt)


def preview_grid(path: str | Path, rows: list[tuple[torch.Tensor, ...]],
                 titles: tuple[str, ...] = ("input", "target", "output"),
                 labels: list[str] | None = None) -> None:
    """Save a grid with one row per example and one column per title; each cell ``(3,H,W)`` in [0,1].
    ``labels``: a line of text per row, written above it."""
    font = ImageFont.load_default()
    h, w = rows[0][0].shape[-2:]
    header, pad = 16, 2
    line = 14 if labels else 0  # a row's label sits in a strip above it
    grid = Image.new("RGB", (len(titles) * (w + pad) + pad, header + len(rows) * (h + pad + line) + pad),
                     "white")
    draw = ImageDraw.Draw(grid)
    for col, title in enumerate(titles):
        draw.text((pad + col * (w + pad) + 4, 2), title, fill="black", font=font)
    for r, cells in enumerate(rows):
        top = header + pad + r * (h + pad + line)
        if labels:
            draw.text((pad + 4, top), labels[r], fill="black", font=font)
        for col, cell in enumerate(cells):
            grid.paste(to_pil(cell), (pad + col * (w + pad), top + line))
    _save(grid, Path(path))


def _nice_decades(lo: float, hi: float) -> list[int]:
    return list(range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1))


def loss_plot(path: str | Path, epochs: list[int], series: dict[str, list[float]],
              title: str = "loss per epoch (log scale)", size: tuple[int, int] = (720, 420),
              x_label: str = "epoch", log: bool = True) -> None:
    """Save a line plot of ``series`` (name -> one value per epoch, or per ``x_label``) on a log10 y axis
    (``log=False``: a linear one).

    Non-finite values, and on a log axis non-positive ones (e.g. an epoch without validation), are left out
    of the line.
    """
    width, height = size
    left, right, top, bottom = 70, 20, 30, 45
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()

    def shown(v: float) -> bool:
        return math.isfinite(v) and (v > 0 or not log)

    values = [v for ys in series.values() for v in ys if shown(v)]
    draw.text((left, 8), title, fill="black", font=font)
    if not epochs or not values:
        _save(img, Path(path))
        return
    if log:
        decades = _nice_decades(min(values), max(values))
        ticks = [10.0**d for d in range(decades[0], max(decades[-1], decades[0] + 1) + 1)]
        scale, labels = math.log10, [f"1e{round(math.log10(t))}" for t in ticks]
    else:
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
        ticks = [lo - pad + (hi - lo + 2 * pad) * k / 4 for k in range(5)]
        scale, labels = float, [f"{t:.4g}" for t in ticks]
    y_lo, y_hi = scale(ticks[0]), scale(ticks[-1])
    x_lo, x_hi = min(epochs), max(max(epochs), min(epochs) + 1)

    def xy(epoch: float, value: float) -> tuple[float, float]:
        x = left + (epoch - x_lo) / (x_hi - x_lo) * (width - left - right)
        y = top + (y_hi - scale(value)) / (y_hi - y_lo) * (height - top - bottom)
        return x, y

    draw.rectangle((left, top, width - right, height - bottom), outline="black")
    for tick, label in zip(ticks, labels, strict=True):
        _, y = xy(x_lo, tick)
        draw.line((left, y, width - right, y), fill=(225, 225, 225))
        draw.text((8, y - 6), label, fill="black", font=font)
    for i in range(6):
        epoch = x_lo + (x_hi - x_lo) * i / 5
        if x_hi - x_lo >= 5:
            epoch = round(epoch)  # whole epochs once there is room
        x, _ = xy(epoch, ticks[0])
        draw.line((x, height - bottom, x, height - bottom + 4), fill="black")
        draw.text((x - 8, height - bottom + 8), f"{epoch:g}", fill="black", font=font)
    draw.text(((width - left) // 2 + left - 15, height - 18), x_label, fill="black", font=font)
    for k, (name, ys) in enumerate(series.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        points = [xy(e, v) for e, v in zip(epochs, ys, strict=True) if shown(v)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        elif points:
            x, y = points[0]
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        lx = width - right - 160
        ly = top + 8 + 14 * k
        draw.line((lx, ly + 6, lx + 20, ly + 6), fill=colour, width=2)
        draw.text((lx + 26, ly), name, fill="black", font=font)
    _save(img, Path(path))
