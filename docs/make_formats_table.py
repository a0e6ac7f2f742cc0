"""Measure every LUT format against the independent readers and writers, for the table of docs/formats.md.

    python docs/make_formats_table.py        # needs PyOpenColorIO and colour-science (test extra), ffmpeg

For each format and direction it prints one Markdown row: the largest absolute difference between
``lutkern``'s result and the other implementation's on the same file, over 20,000 random colours in
[-0.1, 1.2] per channel (inside and outside the domain), float32 on their side:

- *write*: a file lutkern writes, read and applied by OpenColorIO 2.x (``FileTransform``, CPU processor,
  trilinear and tetrahedral, the larger difference shown), colour-science (its reader and ``LUT.apply``,
  trilinear, on the colours inside [0, 1]: it extrapolates a 1D table beyond its domain where lutkern
  and OpenColorIO clamp) and FFmpeg's ``lut3d`` filter (gbrpf32le frames, trilinear) on a 3D table on
  [0, 1] (FFmpeg 5.1 does not apply a domain whose minimum is not 0 or whose maximum is below 1);
- *read*: a file the other implementation writes (OpenColorIO's baker and CLF writer, colour-science's
  writers), read and applied by lutkern, against the writer's own processor.

The LUT is a 17^3 table (FFmpeg reads only that size from a ``.3dl``) that bends every channel with the
other two, values in [0, 1]; a shaper or domain where the format has one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

import lutkern
from lutkern import CubeLUT, identity_lut
from lutkern.formats import LUTChain, Matrix, Range, read_lut, write_lut

N = 20_000
SIZE = 17


def _lut() -> torch.Tensor:
    ident = identity_lut(SIZE, dtype=torch.float64)
    r, g, b = ident.unbind(-1)
    out = torch.stack([r**1.2 * 0.9 + 0.1 * g * b, g**0.8 * 0.95 + 0.05 * r, 0.8 * b + 0.2 * r * g], -1)
    return out.clamp(0, 1)


def _points() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(3, 1, N, generator=gen, dtype=torch.float64) * 1.3 - 0.1


SHAPER = torch.linspace(0, 1, 33, dtype=torch.float64).view(-1, 1).repeat(1, 3) ** 0.6
# What each format's written file holds (name -> content, writer options).
WRITTEN = {
    ".cube": (CubeLUT(_lut(), SHAPER, shaper_domain=((-0.1,) * 3, (1.3,) * 3)), {}),
    ".3dl": (_lut(), {}),
    ".spi1d": (CubeLUT(None, SHAPER, shaper_domain=((-0.1,) * 3, (1.3,) * 3)), {}),
    ".spi3d": (_lut(), {}),
    ".csp": (CubeLUT(_lut(), lut3d_domain=((-0.1, 0.0, 0.05), (1.2, 1.0, 1.1))), {}),
    ".clf": (LUTChain([Matrix(torch.tensor([[0.9, 0.1, 0, 0.01], [0.1, 0.8, 0.1, 0], [0, 0.2, 0.8, -0.02]],
                                           dtype=torch.float64)),
                       Range(-0.1, 1.2, 0.0, 1.0), CubeLUT(None, SHAPER), CubeLUT(_lut())]), {}),
}


def ours(path: Path, img: torch.Tensor, interpolation: str = "trilinear") -> torch.Tensor:
    return read_lut(path, dtype=torch.float64).apply(img, interpolation=interpolation, backend="torch")


def ocio(path: Path, img: torch.Tensor, interpolation: str) -> torch.Tensor:
    import PyOpenColorIO as OCIO

    interp = {"trilinear": OCIO.INTERP_LINEAR, "tetrahedral": OCIO.INTERP_TETRAHEDRAL}[interpolation]
    proc = OCIO.Config.CreateRaw().getProcessor(OCIO.FileTransform(src=str(path), interpolation=interp))
    buf = img.reshape(3, -1).t().numpy().astype(np.float32).copy()
    proc.getDefaultCPUProcessor().applyRGB(buf)
    return torch.from_numpy(buf.astype(np.float64)).t().reshape(img.shape)


def colour_apply(path: Path, img: torch.Tensor) -> torch.Tensor:
    import colour

    lut = colour.read_LUT(str(path))
    img = img.clamp(0, 1)
    flat = img.reshape(3, -1).t().numpy().astype(np.float32).astype(np.float64)
    return torch.from_numpy(np.asarray(lut.apply(flat), dtype=np.float64)).t().reshape(img.shape)


def ffmpeg(path: Path, img: torch.Tensor, tmp: Path) -> torch.Tensor:
    """FFmpeg's lut3d filter (trilinear) on one gbrpf32le frame of ``img`` ``(3,1,N)``."""
    planes = img[[1, 2, 0]].reshape(3, -1).numpy().astype("<f4")  # G, B, R planes
    (tmp / "in.raw").write_bytes(planes.tobytes())
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gbrpf32le", "-s", f"{N}x1",
                    "-i", str(tmp / "in.raw"), "-vf", f"lut3d=file={path}:interp=trilinear", "-f", "rawvideo",
                    "-pix_fmt", "gbrpf32le", str(tmp / "out.raw")], check=True)
    g, b, r = np.frombuffer((tmp / "out.raw").read_bytes(), dtype="<f4").reshape(3, -1).astype(np.float64)
    return torch.from_numpy(np.stack([r, g, b])).reshape(img.shape)


def _max(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def _colour_diff(path: Path, img: torch.Tensor) -> float:
    return _max(ours(path, img.clamp(0, 1)), colour_apply(path, img))


def ocio_baked(fmt: str, path: Path, source: Path) -> None:
    """Write ``path`` in ``fmt`` with OpenColorIO from the file ``source`` (its baker, or for CLF its
    writer)."""
    import PyOpenColorIO as OCIO

    if fmt == ".clf":
        processor = OCIO.Config.CreateRaw().getProcessor(OCIO.FileTransform(src=str(source)))
        processor.createGroupTransform().write(formatName="Academy/ASC Common LUT Format", fileName=str(path),
                    config=OCIO.Config.CreateRaw())
        return
    names = {".3dl": "flame", ".csp": "cinespace", ".spi3d": "spi3d", ".spi1d": "spi1d",
             ".cube": "resolve_cube"}
    config = OCIO.Config.CreateRaw()
    space = OCIO.ColorSpace(name="look")
    space.setTransform(OCIO.FileTransform(src=str(source)), OCIO.COLORSPACE_DIR_FROM_REFERENCE)
    config.addColorSpace(space)
    baker = OCIO.Baker()
    baker.setConfig(config)
    baker.setFormat(names[fmt])
    baker.setInputSpace("raw")
    baker.setTargetSpace("look")
    baker.setCubeSize(SIZE)
    if fmt == ".spi1d":
        baker.setShaperSize(33)
    path.write_text(baker.bake())


def rows(tmp: Path) -> list[str]:
    img = _points()
    out = []
    have_ffmpeg = shutil.which("ffmpeg") is not None
    for fmt, (lut, options) in WRITTEN.items():
        mine = tmp / ("ours" + fmt)
        write_lut(mine, lut, **options)
        ocio_diff = max(_max(ours(mine, img, i), ocio(mine, img, i)) for i in ("trilinear", "tetrahedral"))
        cells = [f"OpenColorIO {_version('PyOpenColorIO')}: {ocio_diff:.1e}"]
        if fmt in (".cube", ".spi1d", ".spi3d", ".csp"):
            cells.append(f"colour-science {_version('colour')}: {_colour_diff(mine, img):.1e}")
        if have_ffmpeg and fmt in (".cube", ".3dl", ".csp"):
            plain = tmp / ("plain" + fmt)
            write_lut(plain, _lut())
            cells.append(f"FFmpeg lut3d: {_max(ours(plain, img), ffmpeg(plain, img, tmp)):.1e}")
        out.append(f"| `{fmt}` | write | {'; '.join(cells)} |")
        # read: files the other implementations write
        cells = []
        source = tmp / "source.cube"
        cube = lut if fmt in (".cube", ".spi1d") else CubeLUT(_lut())
        lutkern.write_cube(source, cube, precision=9)
        theirs = tmp / ("ocio" + fmt)
        ocio_baked(fmt, theirs, source)
        diff = max(_max(ours(theirs, img, i), ocio(theirs, img, i)) for i in ("trilinear", "tetrahedral"))
        cells.append(f"OpenColorIO {_version('PyOpenColorIO')}: {diff:.1e}")
        if fmt in (".cube", ".spi1d", ".spi3d", ".csp"):
            import colour

            table = colour.LUT3D.linear_table(SIZE) ** np.array([1.2, 0.8, 1.0])
            theirs_lut = (colour.LUT3x1D(colour.LUT3x1D.linear_table(33) ** 0.6) if fmt == ".spi1d" else
                          colour.LUT3D(table, domain=np.array([[-0.1, 0, 0.05], [1.2, 1, 1.1]])
                                       if fmt != ".spi3d" else None))
            theirs = tmp / ("colour" + fmt)
            colour.write_LUT(theirs_lut, str(theirs))
            cells.append(f"colour-science {_version('colour')}: {_colour_diff(theirs, img):.1e}")
        out.append(f"| `{fmt}` | read | {'; '.join(cells)} |")
    return out


def _version(module: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return __import__(module).__version__


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        print("| format | direction | independent implementation: max abs difference |")
        print("|---|---|---|")
        for row in rows(Path(tmp)):
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
