"""A picture of a LUT, what a colourist checks at a glance: ``python -m lutkern.show X.cube [--out X.png]``.

Rows of the picture (:func:`lut_picture`):

1. a reference chart (the 24 patches of the ColorChecker, sRGB) before | after the LUT;
2. a hue sweep (hue across, from white through the full colour to black down) before | after;
3. the neutral axis: the output R, G and B of each input grey, with the identity dashed;
4. slices of the lattice at blue = 0, the plane nearest 1/2 and 1 (red across, green up; each slice
   labelled with its exact blue, and a size-2 LUT has only its two planes): the output colour of each
   point; and, for a learned LUT given which points its training data ``covered``, those (bright) and
   which only the regularizers filled in (dark).

The picture is written as PNG, JPEG or TIFF by the extension of ``--out`` (default: the LUT's name with
``.png`` in the current folder, or ``NAME.show.png`` when that would be the LUT itself, a Hald image).

The LUT is read from any LUT file :func:`lutkern.read_lut` reads (``.cube``, ``.3dl``, ``.spi3d``, ``.csp``,
``.clf``, ...), a Hald image or a look, and applied with :func:`lutkern.apply_lut` (trilinear), its whole
transform for a file with a domain or a shaper; a chain of steps (a ``.clf``) or a shaper + 3D table at
partial strength is shown as its transform sampled on a lattice of its 3D table's size (33 without one).
``--strength S`` shows it at partial strength (:func:`lutkern.grading.at_strength`).
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from .cli import CommandParser, add_strength_flag, run_command
from .cube import CubeLUT
from .files import atomic_open, check_output, same_file
from .formats import LUTChain
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
    rows = len(slices)
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
    for row, shown in enumerate(slices):
        for col, (name, image) in enumerate(shown):
            x, y = 3 * PAD + PLOT + col * (SLICE + 2 * PAD), middle + row * (TITLE + SLICE + PAD)
            draw.text((x, y), name, fill="black", font=font)
            canvas.paste(_to_pil(image), (x, y + TITLE))
    return canvas


def _graded(cube: CubeLUT, image: torch.Tensor) -> torch.Tensor:
    return cube.apply(image, backend="torch").clamp(0, 1)


def slice_planes(size: int) -> list[int]:
    """The lattice planes (blue indices) shown of a ``size``-point LUT: the first, the one nearest the
    middle (the lower of two), the last; each once (a size-2 LUT has two)."""
    return sorted({0, (size - 1) // 2, size - 1})


def _blue(plane: int, size: int) -> str:
    """The blue value of lattice plane ``plane``, exactly: ``0``, ``1/2``, ``7/16``, ``1``."""
    return str(Fraction(plane, size - 1))


def _slices(cube: CubeLUT, covered: torch.Tensor | None) -> list[list[tuple[str, torch.Tensor]]]:
    """Rows of ``(label, image)``: the lattice slices of :func:`slice_planes` (red across, green up: the
    LUT is indexed ``[blue, green, red]``) and, given ``covered``, a second row: which points of each the
    data covered (their input colour, dimmed where not covered)."""
    lut = cube.lut3d.float()
    d = lut.shape[0]
    planes = slice_planes(d)
    rows = [[(f"blue {_blue(b, d)}: output", _enlarge(lut[b].permute(2, 0, 1).flip(1).clamp(0, 1)))
             for b in planes]]
    if covered is not None:
        covered = covered.float()
        ramp = torch.linspace(0, 1, d)
        row = []
        for b in planes:
            plane = torch.stack([ramp.view(1, d).expand(d, d), ramp.view(d, 1).expand(d, d).flip(0),
                                 torch.full((d, d), b / (d - 1))])
            row.append((f"blue {_blue(b, d)}: covered", _enlarge(plane * (0.15 + 0.85 * covered[b].flip(0)))))
        rows.append(row)
    return rows


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


# Picture formats by extension: the picture is drawn in flat colours and thin lines, so JPEG gets its
# best quality and full-resolution chroma.
PICTURE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}


def picture_format(path: str | Path) -> str:
    """The Pillow format :func:`save_picture` writes for ``path``'s extension; ValueError for another."""
    fmt = PICTURE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: a picture is written as PNG, JPEG or TIFF; name it .png, .jpg or .tif")
    return fmt


def save_picture(path: str | Path, picture: Image.Image) -> None:
    """Write ``picture`` atomically, as PNG, JPEG or TIFF by ``path``'s extension (:func:`picture_format`)."""
    fmt = picture_format(path)
    options = {"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}
    with atomic_open(Path(path), "wb") as f:
        picture.save(f, fmt, **options)


def default_output(lut: str) -> Path:
    """Where the picture of ``lut`` goes without ``--out``: its name with ``.png`` in the current folder,
    or ``NAME.show.png`` when that is the LUT itself (a Hald image)."""
    out = Path(Path(lut).stem + ".png")
    return out.with_suffix(".show.png") if same_file(out, lut) else out


def _lattice_size(lut: Blend | LUTChain) -> int:
    """The size of the (largest) 3D table in ``lut``, or 33 when it has none."""
    inner = lut.cube if isinstance(lut, Blend) else lut
    tables = inner.steps if isinstance(inner, LUTChain) else [inner]
    sizes = [t.lut3d.shape[0] for t in tables if isinstance(t, CubeLUT) and t.lut3d is not None]
    return max(sizes, default=33)


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("lut", help="a LUT file (.cube, .3dl, .spi1d, .spi3d, .csp, .clf), a Hald CLUT .png/.tif, "
                   "or a built-in look")
    p.add_argument("--out", type=Path, help="the picture to write, .png, .jpg or .tif (default: the LUT's "
                   "name with .png, here; NAME.show.png for a Hald image)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (never the LUT)")
    add_strength_flag(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_command(_parser(), argv, _run)


def _run(args: argparse.Namespace) -> int:
    out = args.out or default_output(args.lut)
    picture_format(out)
    check_output(out, [args.lut], overwrite=args.overwrite)
    lut = at_strength(load_lut(args.lut), args.strength)
    if isinstance(lut, Blend | LUTChain):  # no single table holds it: show its transform on a lattice
        lut = CubeLUT(sample_lut(lut, _lattice_size(lut)).float(), title=lut.title)
    title = Path(args.lut).name + ("" if args.strength == 1 else f" at strength {args.strength:g}")
    save_picture(out, lut_picture(lut, title=title))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
