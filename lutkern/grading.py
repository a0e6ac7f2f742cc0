"""Grading image files with a LUT: what ``python -m lutkern.apply`` and ``python -m img2lut.predict`` share.

A LUT comes from a LUT file (``.cube``, ``.3dl``, ``.spi1d``, ``.spi3d``, ``.csp``, ``.clf``), a Hald CLUT
image or a built-in look (:func:`load_lut`), at full or
partial strength (:func:`at_strength`). An image is decoded once to integer codes
(:func:`lutkern.imageio.decode_image`) and graded in place, in horizontal strips of about
:data:`STRIP_PIXELS` pixels (:func:`grade_codes`), so the peak memory is about one integer image plus two
float strips, whatever the image size. A float still (EXR) is graded in place the same way
(:func:`grade_pixels`), its values unclamped except by the LUT's own domain.

Without torch: 8 and 16-bit codes graded on the CPU by the compiled loop with a plain 3D table from a
``.cube`` file need nothing but numpy (:func:`codes_table`, then :func:`grade_codes` with that table),
so a command that only does that never imports torch (1-2 s). ``LUTKERN_TORCH_FREE=0`` turns that off
(the same bytes come out either way: the same loop grades them).
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._backend import resolve_backend
from .conventions import LOOK_NAMES
from .cube import CubeLUT, CubeTables, read_cube_tables
from .exr_dpx import FloatImage, exr_output_compression, write_exr
from .imageio import DecodedImage, codes_to_pixels, to_integer_array
from .ops.apply_lut_native import ALL_CODES, every_code_graded, look_up_codes, native_available
from .ops.apply_lut_native import grade_codes as grade_codes_native

if TYPE_CHECKING:  # torch (and the LUT formats, which use it) are imported where needed: see codes_table
    import torch

    from .formats import LUTChain

STRIP_PIXELS = 1 << 20  # 1 Mpx: 12 MiB per float32 RGB strip (the torch path makes ~20 temporaries)


def load_lut(spec: str, size: int = 33) -> CubeLUT | LUTChain:
    """A LUT file in a format of :data:`lutkern.formats.FORMATS` (chosen by extension), a Hald CLUT image
    (``.png``/``.tif``/``.tiff``) or the name of a built-in look."""
    from .formats import FORMATS, read_lut

    path = Path(spec)
    if path.is_file():
        ext = path.suffix.lower()
        if ext in FORMATS:
            return read_lut(path)
        if ext in (".png", ".tif", ".tiff"):
            from .hald import read_hald

            return CubeLUT(read_hald(path), title=path.stem)
        raise ValueError(f"{spec}: unknown LUT file type {ext!r} (expected {', '.join(FORMATS)}, or a Hald "
                         "CLUT .png/.tif)")
    if spec in LOOK_NAMES:
        from .builtin_looks import LOOKS

        return CubeLUT(LOOKS[spec](size), title=spec)
    if path.exists():
        raise ValueError(f"{spec}: not a regular file")
    looks = ", ".join(sorted(LOOK_NAMES))
    raise ValueError(f"{spec}: no such file, and not a built-in look (looks: {looks})")


def cube_tables(spec: str) -> CubeTables | None:
    """The tables of ``spec`` when it names a ``.cube`` file, read without torch (``load_lut(spec)`` is
    ``cube_tables(spec).cube_lut()`` then); None for anything else (a look, a Hald image, no file)."""
    path = Path(spec)
    return read_cube_tables(path) if path.suffix.lower() == ".cube" and path.is_file() else None


def codes_table(tables: CubeTables | None, strength: float = 1.0, device: str = "cpu",
                backend: str | None = None) -> np.ndarray | None:
    """The float32 table ``(D,D,D,3)`` (numpy) with which :func:`grade_codes` grades 8 and 16-bit codes as
    it would with ``at_strength(tables.cube_lut(), strength)``, without importing torch; or None when that
    needs torch: ``LUTKERN_TORCH_FREE=0``, a device other than ``"cpu"``, a backend (argument or
    ``LUTKERN_BACKEND``) other than torch, no compiled loop, a partial strength, no tables (a look or a
    Hald image), a shaper or a domain other than [0, 1]."""
    if tables is None or os.environ.get("LUTKERN_TORCH_FREE", "1").strip() == "0":
        return None
    backend = backend or os.environ.get("LUTKERN_BACKEND") or "torch"
    if device != "cpu" or strength != 1 or backend != "torch":
        return None
    if tables.shaper is not None or tables.lut3d is None or tables.lut3d_domain != _UNIT:
        return None
    return tables.lut3d.astype(np.float32) if native_available() else None


_UNIT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def as_cube_lut(lut: CubeLUT | LUTChain | Blend | np.ndarray) -> CubeLUT | LUTChain | Blend:
    """``lut`` as :meth:`CubeLUT.apply` takes it: a :func:`codes_table` becomes a float32 CubeLUT."""
    if not isinstance(lut, np.ndarray):
        return lut
    import torch

    return CubeLUT(torch.from_numpy(lut))


def input_domain(lut: CubeLUT | LUTChain):
    """``(min_rgb, max_rgb)`` a LUT clamps its input to (its first table's domain), or None for a chain whose
    first step clamps nothing (a CLF Matrix)."""
    from .formats import LUTChain

    if isinstance(lut, LUTChain):
        return lut.input_domain
    return lut.shaper_domain if lut.shaper is not None else lut.lut3d_domain


def _domain_clamp(x: torch.Tensor, domain) -> torch.Tensor:
    import torch

    if domain is None:
        return x
    lo = torch.tensor(domain[0], dtype=x.dtype, device=x.device).view(3, 1, 1)
    hi = torch.tensor(domain[1], dtype=x.dtype, device=x.device).view(3, 1, 1)
    return torch.minimum(torch.maximum(x, lo), hi)


@dataclasses.dataclass
class Blend:
    """A shaper + 3D LUT (or a chain of steps) at partial ``strength``, which no single table of the same kind
    holds: each pixel ``x`` becomes ``c + strength * (lut(x) - c)``, ``c`` being ``x`` clamped to the LUT's
    input domain (:func:`input_domain`)."""

    cube: CubeLUT | LUTChain
    strength: float

    @property
    def title(self) -> str | None:
        return self.cube.title

    def apply(self, image: torch.Tensor, *, interpolation: str = "trilinear", backend: str | None = None):
        import torch

        graded = self.cube.apply(image, interpolation=interpolation, backend=backend)
        return torch.lerp(_domain_clamp(image, input_domain(self.cube)), graded, self.strength)


def _identity_over(domain, size: int, dtype) -> torch.Tensor:
    """``(size,3)``: the inputs of a 1D table's rows over ``domain`` (min, max per channel)."""
    import torch

    lo, hi = (torch.tensor(v, dtype=torch.float64) for v in domain)
    return torch.lerp(lo, hi, torch.linspace(0, 1, size, dtype=torch.float64).view(-1, 1)).to(dtype)


def at_strength(lut: CubeLUT | LUTChain, strength: float) -> CubeLUT | LUTChain | Blend:
    """``lut`` at ``strength`` in [0, 1]: each pixel ``x`` becomes ``c + strength * (lut(x) - c)``, where
    ``c`` is ``x`` clamped to the LUT's input domain (values outside it are clamped, as at full strength).

    A 3D table alone (or a 1D table alone) is blended with the identity over its domain
    (:func:`lutkern.lut_at_strength`): a LUT of the same kind, exact for trilinear and tetrahedral
    interpolation, that can be written to a file. A shaper + 3D table is blended per pixel (:class:`Blend`).
    Strength 1 returns ``lut`` itself.
    """
    import torch

    from .formats import LUTChain
    from .functional import check_strength, identity_lut

    check_strength(strength)
    if strength == 1:
        return lut
    if isinstance(lut, LUTChain) or (lut.shaper is not None and lut.lut3d is not None):
        return Blend(lut, float(strength))
    if lut.shaper is not None:
        identity = _identity_over(lut.shaper_domain, lut.shaper.shape[0], lut.shaper.dtype)
        return dataclasses.replace(lut, shaper=torch.lerp(identity, lut.shaper, float(strength)))
    d = lut.lut3d.shape[0]
    lo, hi = (torch.tensor(v, dtype=torch.float64) for v in lut.lut3d_domain)
    identity = (lo + identity_lut(d, dtype=torch.float64) * (hi - lo)).to(lut.lut3d.dtype)
    return dataclasses.replace(lut, lut3d=torch.lerp(identity, lut.lut3d, float(strength)))


def sample_lut(lut: CubeLUT | LUTChain | Blend, size: int) -> torch.Tensor:
    """The whole transform of ``lut`` (domain, shaper, 3D table, strength) sampled at a ``size``-point
    lattice over [0, 1]: ``(size,size,size,3)`` float64, ``[b, g, r, c]`` (the torch backend)."""
    import torch

    from .functional import identity_lut

    grid = identity_lut(size, dtype=torch.float64).permute(3, 0, 1, 2).reshape(3, -1, size)
    out = lut.apply(grid, backend="torch")
    return out.reshape(3, size, size, size).permute(1, 2, 3, 0).contiguous()


def grade_pixels(
    pixels: torch.Tensor,
    lut: CubeLUT | LUTChain | Blend | np.ndarray,
    *,
    interpolation: str = "trilinear",
    device: str | torch.device = "cpu",
    backend: str | None = None,
    strip_pixels: int = STRIP_PIXELS,
    on_strip=None,
) -> torch.Tensor:
    """Grade float ``pixels`` ``(3,H,W)`` (a CPU tensor, any values) in place, strip by strip, and return
    it. Nothing is clamped but by the LUT: inputs to its domain, as :meth:`CubeLUT.apply` does; its
    outputs are kept as they are (above 1, below 0). ``lut`` may be a :func:`codes_table`."""
    lut = as_cube_lut(lut)
    _, h, w = pixels.shape
    rows = max(1, strip_pixels // max(w, 1))
    for y in range(0, h, rows):
        x = pixels[:, y : y + rows].to(device)
        out = lut.apply(x.unsqueeze(0), interpolation=interpolation, backend=backend)[0]
        pixels[:, y : y + rows] = out.to(pixels.device, pixels.dtype)
        if on_strip is not None:
            on_strip(min(rows, h - y) / h)
    return pixels


def grade_codes(
    codes: np.ndarray,
    lut: CubeLUT | LUTChain | Blend | np.ndarray,
    *,
    interpolation: str = "trilinear",
    device: str | torch.device = "cpu",
    backend: str | None = None,
    strip_pixels: int = STRIP_PIXELS,
    on_strip=None,
    bit_depth: int | None = None,
) -> np.ndarray:
    """Grade ``codes`` ``(H,W,3)`` uint8/uint16 in place, strip by strip, and return it.

    bit_depth: that of the codes (default 8 for uint8, 16 for uint16; 10 or 12 for DPX codes).
    Output codes are the LUT output clamped to [0, 1] and rounded to the nearest code. A plain float32 3D
    LUT on the CPU's torch backend grades 8 and 16-bit codes in one pass of the compiled loop (the same
    bits); so does a :func:`codes_table`, without torch.
    """
    depth = bit_depth or (8 if codes.dtype == np.uint8 else 16)
    table = _one_pass_table(codes, depth, lut, device, backend)
    if table is not None:
        grade_codes_native(codes, table, interpolation)
        if on_strip is not None:
            on_strip(1.0)
        return codes
    lut = as_cube_lut(lut)
    h, w, _ = codes.shape
    rows = max(1, strip_pixels // max(w, 1))
    for y in range(0, h, rows):
        x = codes_to_pixels(codes[y : y + rows], depth).to(device)
        out = lut.apply(x.unsqueeze(0), interpolation=interpolation, backend=backend)[0]
        codes[y : y + rows] = to_integer_array(out, depth)
        if on_strip is not None:
            on_strip(min(rows, h - y) / h)
    return codes


class CodesGrader:
    """:func:`grade_codes` for a run of images with one LUT and the same settings: a video's frames, a batch
    of photos. Once it has graded as many 8-bit pixels as there are 8-bit colours (:data:`ALL_CODES`,
    16.7 M: 18 frames of 720p), it grades every 8-bit colour once with the compiled loop
    (:func:`~lutkern.ops.apply_lut_native.every_code_graded`, 48 MiB) and looks the following 8-bit
    images up in that table: the codes :func:`grade_codes` gives, bit for bit, for one memory read per
    pixel (10-20x faster than interpolating on video frames; 1.5x on noise, whose reads miss the caches).
    Deciding that late costs a run at most twice what the better choice would have. Only where the loop
    grades in one pass (see :func:`grade_codes`); else :func:`grade_codes` every time."""

    def __init__(self, lut: CubeLUT | LUTChain | Blend | np.ndarray, *, interpolation: str = "trilinear",
                 device: str | torch.device = "cpu", backend: str | None = None):
        self._lut = lut
        self._grading = {"interpolation": interpolation, "device": device, "backend": backend}
        self._graded = 0  # 8-bit pixels graded by interpolation so far
        self._every_code: np.ndarray | None = None
        self._one_pass = True  # False once the table is known to need more than the one-pass loop

    def __call__(self, codes: np.ndarray, *, bit_depth: int | None = None, strip_pixels: int = STRIP_PIXELS,
                 on_strip=None) -> np.ndarray:
        """``grade_codes(codes, lut, ...)`` with this grader's settings: ``codes`` graded in place."""
        if codes.dtype == np.uint8 and bit_depth in (None, 8) and codes.flags.c_contiguous:
            if self._every_code is None and self._one_pass and self._graded >= ALL_CODES:
                grading = self._grading
                table = _one_pass_table(codes, 8, self._lut, grading["device"], grading["backend"])
                self._one_pass = table is not None
                if self._one_pass:
                    self._every_code = every_code_graded(table, grading["interpolation"])
            if self._every_code is not None:
                look_up_codes(codes, self._every_code)
                if on_strip is not None:
                    on_strip(1.0)
                return codes
            self._graded += codes.size // 3
        return grade_codes(codes, self._lut, bit_depth=bit_depth, strip_pixels=strip_pixels,
                           on_strip=on_strip, **self._grading)


def _one_pass_table(codes: np.ndarray, depth: int, lut, device, backend: str | None) -> np.ndarray | None:
    """The float32 table with which :func:`lutkern.ops.apply_lut_native.grade_codes` gives
    :func:`grade_codes`'s result, or None: 8 or 16-bit contiguous codes, and a :func:`codes_table` or a 3D
    table alone on [0, 1], float32, applied on the CPU by the torch backend's compiled loop."""
    if depth not in (8, 16) or not codes.flags.c_contiguous:
        return None
    if isinstance(lut, np.ndarray):
        return lut
    import torch

    if (isinstance(lut, CubeLUT) and lut.shaper is None and lut.lut3d is not None
            and lut.lut3d.dtype == torch.float32
            and tuple(map(tuple, lut.lut3d_domain)) == _UNIT and torch.device(device).type == "cpu"
            and resolve_backend(backend, torch.device("cpu")) == "torch" and native_available()):
        return lut.lut3d.detach().contiguous().numpy()
    return None


def profile_name(icc: bytes) -> str:
    """The description an ICC profile gives of itself (``unparsable`` when it cannot be read)."""
    from PIL import ImageCms  # 30 ms of start-up that a photo without a profile does not need

    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() or "unnamed"
    except Exception:  # an unparsable profile is still carried over byte for byte
        return "unparsable"


def input_notes(img: DecodedImage) -> list[str]:
    """What of a decoded input is not in its output: alpha, and frames after the first."""
    notes = ["alpha channel dropped"] if img.dropped_alpha else []
    if img.frames > 1:
        notes.append(f"only the first of its {img.frames} frames is used")
    return notes


def check_exr_output(path: str | Path) -> None:
    """ValueError unless ``path`` names an EXR: float pixels are never quantised into another format."""
    if Path(path).suffix.lower() != ".exr":
        raise ValueError(f"an EXR (float pixels) cannot be written as {Path(path).suffix!r}: name it .exr")


def grade_exr(img: FloatImage, dst: str | Path, lut: CubeLUT | LUTChain | Blend, **grading) -> str:
    """Grade an EXR's pixels in place (:func:`grade_pixels`, ``grading`` its options) and write them to
    ``dst`` with their precision and, where FFmpeg writes it, compression; returns the console note."""
    check_exr_output(dst)
    grade_pixels(img.pixels, lut, **grading)
    compression = exr_output_compression(img.compression)
    write_exr(dst, img.pixels, precision=img.precision, compression=compression)
    return "; ".join(_float_notes(img, compression))


def _float_notes(img: FloatImage, compression: str) -> list[str]:
    """What of a graded EXR is not as in its input: the reader's notes (alpha, other channels, windows,
    parts, header attributes), a change of compression, and pixels that are NaN (NaN in, NaN out)."""
    notes = list(img.notes)
    if compression != img.compression:
        notes.append(f"{img.compression} compression written as {compression} (FFmpeg's EXR encoder writes "
                     "none, RLE and ZIP)")
    import torch

    nan = int(torch.isnan(img.pixels).any(dim=0).sum())
    if nan:
        notes.append(f"{nan} pixels are NaN and stay NaN")
    return notes
