"""A picture of a LUT, what a colourist checks at a glance: ``python -m lutkern.show X.cube [--out X.png]``.

Rows of the picture (:func:`lut_picture`):

1. a reference chart (the 24 patches of the ColorChecker, sRGB) before | after the LUT;
2. a hue sweep (hue across, from white through the full colour to black down) before | after;
3. the neutral axis: the output R, G and B of each input grey, with the identity dashed;
4. slices of the lattice at blue = 0, 1/2 and 1 (red across, green up): the output colour of each point;
   and, for a learned LUT given which points its training data ``covered``, those (bright) and
   which only the regularizers filled in (dark).

The LUT is applied with :func:`lutkern.apply_lut` (trilinear), its whole transform for a ``.cube`` with a
domain or a shaper; ``--strength S`` shows it at partial strength (:func:`lutkern.grading.at_strength`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from .cli import CommandParser, add_strength_flag, run_command
from .cube import CubeLUT
from .files import atomic_open, check_output
from .grading import Blend, at_strength, load_lut, sample_lut

PROG = "python -m lutkern.show"
# The 24 patches of the X-Rite ColorChecker Classic in sRGB (8-bit, D65), row by row as on the chart.
COLORCHECKER = (
    (115, 82, 68), (194, 150, 130), (98, 122, 157), (87, 108, 67), (133, 128, 177), (103, 189, 170),
    (214, 126, 44), (80, 91, 166), (193, 90, 99), (94, 60, 108), (157, 188, 64), (224, 163, 46),
    (56, 61, 150), (70, 148, 73), (175, 54, 60), (231, 199, 31), (187, 86, 149), (8, 133, 161),
    (243, 243, 242), (200, 200, 200), (160, 160, 160), (122, 122, 121), (85, 85, 85), (52, 52, 52),
)
PATCH, SWEEP_W, SWEEP_H, PLOT, SLICE, PAD, TITLE = 40, 240, 160, 200, 128, 10, 16


def colour_chart() -> torch.Tensor:
    """``(3, 4*PATCH, 6*PATCH)`` the ColorChecker's 24 patches in [0,1]."""
    patches = torch.tensor(COLORCHECKER, dtype=torch.float32).view(4, 6, 3) / 255
    return patches.repeat_interleave(PATCH, 0).repeat_interleave(PATCH, 1).permute(2, 0, 1).contiguous()


def hue_sweep(width: int = SWEEP_W, height: int = SWEEP_H) -> torch.Tensor:
    """``(3,height,width)``: hue 0..360 degrees across; down: white, the full colour (middle), black."""
    hue = torch.linspace(0, 6, width).view(1, width)
    # Fully saturated colour of each hue: the HSV -> RGB ramps for value 1, saturation 1.
    k = torch.tensor([5.0, 3.0, 1.0]).view(3, 1, 1)
    t = (k + hue.unsqueeze(0)) % 6
    full = 1 - torch.minimum(torch.minimum(t, 4 - t), torch.ones_like(t)).clamp(min=0)
    y = torch.linspace(0, 1, height).view(1, height, 1)
    top = 1 - 2 * y.clamp(max=0.5)  # 1 -> 0 over the upper half: white to the full colour
    bottom = 2 - 2 * y.clamp(min=0.5)  # 1 -> 0 over the lower half: the full colour to black
    upper = full * (1 - top) + top
    return torch.where(y <= 0.5, upper, full * bottom).expand(3, height, width).contiguous()


def lut_picture(lut: CubeLUT | torch.Tensor, covered: torch.Tensor | None = None,
                title: str | None = None) -> Image.Image:
    """The picture of ``lut`` (a ``(D,D,D,3)`` tensor or a :class:`CubeLUT`); ``covered`` ``(D,D,D)`` bool:
    for a learned LUT, the lattice points its training data covered (the learner's own measure)."""
    cube = lut if isinstance(lut, CubeLUT) else CubeLUT(lut.detach().float().cpu())
    if cube.lut3d is None:
        raise ValueError("a picture needs a 3D LUT; this file holds only a 1D shaper")
    chart, sweep = colour_chart(), hue_sweep()
    panels = [("chart", chart), ("chart + LUT", _graded(cube, chart)), ("hue sweep", sweep),
              ("hue sweep + LUT", _graded(cube, sweep))]
    slices = _slices(cube, covered)
    rows = -(-len(slices) // 3)
    width = 4 * SWEEP_W + 5 * PAD
    top = TITLE + PAD  # the panels' labels start here
    middle = top + TITLE + SWEEP_H + 2 * PAD
    height = middle + TITLE + max(PLOT, rows * (TITLE + SLICE + PAD)) + PAD
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((PAD, 2), title or cube.title or "LUT", fill="black", font=font)
    for k, (name, image) in enumerate(panels):
        x = PAD + k * (SWEEP_W + PAD)
        draw.text((x, top), name, fill="black", font=font)
        canvas.paste(_to_pil(image), (x, top + TITLE))
    draw.text((PAD, middle), "neutral axis: R, G, B out per grey in", fill="black", font=font)
    canvas.paste(_neutral_plot(cube), (PAD, middle + TITLE))
    for k, (name, image) in enumerate(slices):
        row, col = divmod(k, 3)
        x, y = 3 * PAD + PLOT + col * (SLICE + 2 * PAD), middle + row * (TITLE + SLICE + PAD)
        draw.text((x, y), name, fill="black", font=font)
        canvas.paste(_to_pil(image), (x, y + TITLE))
    return canvas


def _graded(cube: CubeLUT, image: torch.Tensor) -> torch.Tensor:
    return cube.apply(image, backend="torch").clamp(0, 1)


_SLICES = (("0", 0.0), ("1/2", 0.5), ("1", 1.0))


def _slices(cube: CubeLUT, covered: torch.Tensor | None) -> list[tuple[str, torch.Tensor]]:
    """The lattice slices at blue = 0, 1/2, 1 (red across, green up) and, given ``covered``, which
    points of each the data covered (their input colour, dimmed where not covered)."""
    lut = cube.lut3d.float()
    d = lut.shape[0]
    out = []
    for label, blue in _SLICES:
        b = round(blue * (d - 1))
        out.append((f"blue {label}: output", _enlarge(lut[b].permute(2, 0, 1).flip(1).clamp(0, 1))))
    if covered is not None:
        covered = covered.float()
        ramp = torch.linspace(0, 1, d)
        for label, blue in _SLICES:
            b = round(blue * (d - 1))
            plane = torch.stack([ramp.view(1, d).expand(d, d), ramp.view(d, 1).expand(d, d).flip(0),
                                 torch.full((d, d), b / (d - 1))])
            out.append((f"blue {label}: covered", _enlarge(plane * (0.15 + 0.85 * covered[b].flip(0)))))
    return out


def _enlarge(plane: torch.Tensor) -> torch.Tensor:
    """A ``(3,D,D)`` lattice slice shown as ``(3,SLICE,SLICE)`` blocks (nearest: one block per point)."""
    idx = (torch.arange(SLICE) * plane.shape[1] // SLICE).clamp(max=plane.shape[1] - 1)
    return plane[:, idx][:, :, idx]


def _neutral_plot(cube: CubeLUT) -> Image.Image:
    """Output R, G, B along the grey axis, ``PLOT x PLOT`` with a frame."""
    grey = torch.linspace(0, 1, PLOT).view(1, 1, PLOT).expand(3, 1, PLOT).contiguous()
    out = cube.apply(grey, backend="torch")[:, 0]  # (3, PLOT)
    img = Image.new("RGB", (PLOT, PLOT), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, PLOT - 1, PLOT - 1), outline="black")
    for i in range(0, PLOT, 6):  # the identity, dashed
        draw.line([(i, PLOT - 1 - i), (i + 2, PLOT - 3 - i)], fill=(120, 120, 120), width=1)
    for channel, colour in enumerate(((220, 30, 30), (30, 160, 30), (30, 60, 220))):
        values = out[channel].clamp(0, 1).tolist()
        draw.line([(i, (PLOT - 1) * (1 - v)) for i, v in enumerate(values)], fill=colour, width=2)
    return img


def _to_pil(image: torch.Tensor) -> Image.Image:
    codes = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(codes.permute(1, 2, 0).numpy(), "RGB")


def save_picture(path: str | Path, picture: Image.Image) -> None:
    """Write ``picture`` as PNG, atomically."""
    with atomic_open(Path(path), "wb") as f:
        picture.save(f, "PNG")


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("lut", help="a .cube file, a Hald CLUT .png/.tif, or a built-in look")
    p.add_argument("--out", type=Path, help="the PNG to write (default: the LUT's name with .png, here)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (never the LUT)")
    add_strength_flag(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_command(_parser(), argv, _run)


def _run(args: argparse.Namespace) -> int:
    out = args.out or Path(Path(args.lut).stem + ".png")
    check_output(out, [args.lut], overwrite=args.overwrite)
    lut = at_strength(load_lut(args.lut), args.strength)
    if isinstance(lut, Blend):  # no table holds a shaper + 3D LUT at partial strength: show its lattice
        lut = CubeLUT(sample_lut(lut, lut.cube.lut3d.shape[0]).float(), title=lut.title)
    title = Path(args.lut).name + ("" if args.strength == 1 else f" at strength {args.strength:g}")
    save_picture(out, lut_picture(lut, title=title))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
