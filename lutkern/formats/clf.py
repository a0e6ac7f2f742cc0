"""``.clf`` files (Academy/ASC Common LUT Format 3.0): an XML ``ProcessList`` of nodes applied in order.

Read and written: ``LUT1D`` (``Array dim="N 3"`` or ``"N 1"``), ``LUT3D`` (``Array dim="N N N 3"``, rows
**blue fastest**, the transpose of ``.cube``'s order), ``Matrix`` (``dim="3 3"`` or ``"3 4"``, the fourth
column an offset) and ``Range`` (all four of ``minInValue``, ``maxInValue``, ``minOutValue``,
``maxOutValue``; ``style="Clamp"``, the default, or ``"noClamp"``). Each node's ``inBitDepth`` and
``outBitDepth`` (``8i``, ``10i``, ``12i``, ``16i``, ``16f``, ``32f``) scale its values: everything is
held normalised (a ``10i`` code ``v`` is ``v / 1023``), as OpenColorIO processes float images. A node's
``inBitDepth`` must be the previous node's ``outBitDepth``. The file is read as a :class:`LUTChain` (or,
written from a CubeLUT, Range + LUT1D + Range + LUT3D as needed).

Refused, with the line of the element: other nodes (``Log``, ``Exponent``, ``ASC_CDL``, ``InvLUT1D``,
``InvLUT3D``, ...), ``halfDomain`` and ``rawHalfs`` 1D tables, ``IndexMap``, a Range missing a bound,
array sizes beyond the project's limits (checked before the values are converted), values that are not
finite numbers. The XML is parsed by expat with a document type declaration refused outright, so no
entity is ever defined or expanded (no "billion laughs", no external files).
"""

from __future__ import annotations

import dataclasses
import math
import xml.parsers.expat
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import torch

from ..cube import _NUMBER_RE, MAX_1D_SIZE, CubeLUT
from ..functional import MAX_LUT_SIZE, MIN_LUT_SIZE, check_lut
from .chain import Curves, LUTChain, Matrix, Range
from .common import LUTFormatError, check_precision, rows_tensor

BIT_DEPTHS = {"8i": 255, "10i": 1023, "12i": 4095, "16i": 65535, "16f": 1, "32f": 1}
_NODES = ("LUT1D", "LUT3D", "Matrix", "Range")
_METADATA = ("Description", "InputDescriptor", "OutputDescriptor", "Info")
_MAX_DEPTH = 32


@dataclasses.dataclass
class _Element:
    tag: str
    attrs: dict
    line: int
    children: list = dataclasses.field(default_factory=list)
    text: list = dataclasses.field(default_factory=list)

    def find(self, tag: str):
        found = [c for c in self.children if c.tag == tag]
        return found[0] if found else None


def _tree(content: bytes, source: str) -> _Element:
    """The XML as a tree of :class:`_Element` (namespace prefixes dropped), by expat, refusing any DTD."""
    parser = xml.parsers.expat.ParserCreate()
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[_Element] = []
    root: list[_Element] = []

    def refuse(*_):
        raise LUTFormatError(
            source,
            parser.CurrentLineNumber,
            "a document type declaration (DOCTYPE, ENTITY) is not allowed in a .clf file",
        )

    def start(tag, attrs):
        if len(stack) == _MAX_DEPTH:
            raise LUTFormatError(
                source, parser.CurrentLineNumber, f"elements nested deeper than {_MAX_DEPTH}"
            )
        element = _Element(tag.rsplit(":", 1)[-1], attrs, parser.CurrentLineNumber)
        (stack[-1].children if stack else root).append(element)
        stack.append(element)

    def end(_tag):
        stack.pop()

    def text(data):
        if stack:
            stack[-1].text.append(data)

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(content, True)
    except LookupError as exc:  # the XML declaration names an encoding Python does not know
        raise LUTFormatError(source, 1, str(exc)[:80]) from None
    except xml.parsers.expat.ExpatError as exc:
        raise LUTFormatError(
            source, exc.lineno, f"not well-formed XML: {xml.parsers.expat.ErrorString(exc.code)}"
        ) from None
    return root[0]


def _text(element: _Element) -> str:
    return "".join(element.text).strip()


def _bit_depth(source: str, node: _Element, name: str) -> str:
    depth = node.attrs.get(name)
    if depth not in BIT_DEPTHS:
        raise LUTFormatError(
            source,
            node.line,
            f"{node.tag} {name} must be one of {', '.join(BIT_DEPTHS)}, got {str(depth)[:20]!r}",
        )
    return depth


def _array(source: str, node: _Element, dims: list[tuple[int, ...]], sizes=None) -> np.ndarray:
    """The ``Array`` child of ``node``: its ``dim`` (one of ``dims``, where 0 is any size, then
    ``sizes(shape)`` says what is wrong with it or None) checked before its text is converted; returns the
    values float64, shaped as ``dim`` says."""
    array = node.find("Array")
    if array is None:
        raise LUTFormatError(source, node.line, f"{node.tag} has no Array")
    tokens = str(array.attrs.get("dim", "")).split()
    shape = None
    for want in dims:
        if len(tokens) == len(want) and all(t.isascii() and t.isdigit() and len(t) <= 6 for t in tokens):
            got = tuple(int(t) for t in tokens)
            if all(w == 0 or w == g for w, g in zip(want, got, strict=True)):
                shape = got
                break
    if shape is None:
        raise LUTFormatError(
            source,
            array.line,
            f"{node.tag} Array dim {array.attrs.get('dim', '')[:40]!r} "
            f"is not one of {' / '.join(' '.join(map(str, d)).replace('0', 'N') for d in dims)}",
        )
    problem = sizes(shape) if sizes is not None else None
    if problem is not None:
        raise LUTFormatError(source, array.line, f"{node.tag} {problem}")
    count = math.prod(shape)
    values = _text(array).split()
    if len(values) != count:
        raise LUTFormatError(
            source,
            array.line,
            f"{node.tag} Array dim {' '.join(tokens)} needs {count} values, found {len(values)}",
        )
    for v in values:
        if not _NUMBER_RE.fullmatch(v):
            raise LUTFormatError(source, array.line, f"{node.tag} Array: {v[:40]!r} is not a finite number")
    array_values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array_values).all():  # 1e999
        raise LUTFormatError(source, array.line, f"{node.tag} Array: a value overflows to infinity")
    return array_values.reshape(shape)


def _table(source: str, node: _Element, values: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return rows_tensor(source, values.reshape(-1, 3), [node.line] * (values.size // 3), dtype)


def _lut1d(source: str, node: _Element, scale_out: float, dtype: torch.dtype) -> CubeLUT:
    for attr in ("halfDomain", "rawHalfs"):
        if node.attrs.get(attr, "false").lower() != "false":
            raise LUTFormatError(source, node.line, f"LUT1D {attr} is not supported")
    if node.attrs.get("interpolation", "linear") != "linear":
        raise LUTFormatError(source, node.line, "LUT1D interpolation must be linear")
    values = _array(
        source,
        node,
        [(0, 3), (0, 1)],
        lambda shape: (
            None if 2 <= shape[0] <= MAX_1D_SIZE else f"size {shape[0]} is out of range [2, {MAX_1D_SIZE}]"
        ),
    )
    if values.shape[1] == 1:
        values = np.repeat(values, 3, axis=1)
    return CubeLUT(None, _table(source, node, values / scale_out, dtype))


def _lut3d(source: str, node: _Element, scale_out: float, dtype: torch.dtype) -> CubeLUT:
    if node.attrs.get("interpolation", "trilinear") not in ("trilinear", "tetrahedral"):
        raise LUTFormatError(source, node.line, "LUT3D interpolation must be trilinear or tetrahedral")
    values = _array(
        source,
        node,
        [(0, 0, 0, 3)],
        lambda shape: (
            f"dim {shape[:3]} is not a cube"
            if len(set(shape[:3])) != 1
            else None
            if MIN_LUT_SIZE <= shape[0] <= MAX_LUT_SIZE
            else f"size {shape[0]} is out of range [{MIN_LUT_SIZE}, {MAX_LUT_SIZE}]"
        ),
    )
    ours = values.transpose(2, 1, 0, 3) / scale_out  # file [r, g, b] (blue fastest) -> ours [b, g, r]
    return CubeLUT(_table(source, node, np.ascontiguousarray(ours), dtype).reshape(ours.shape))


def _matrix(source: str, node: _Element, scale_in: float, scale_out: float) -> Matrix:
    values = _array(source, node, [(3, 3), (3, 4), (3, 3, 3), (3, 4, 3)])
    values = values.reshape(3, -1)
    m = np.zeros((3, 4))
    m[:, :3] = values[:, :3] * scale_in / scale_out
    if values.shape[1] == 4:
        m[:, 3] = values[:, 3] / scale_out
    return Matrix(torch.from_numpy(m))


def _range(source: str, node: _Element, scale_in: float, scale_out: float) -> Range:
    style = node.attrs.get("style", "Clamp")
    if style not in ("Clamp", "noClamp"):
        raise LUTFormatError(source, node.line, f"Range style must be Clamp or noClamp, got {style[:20]!r}")
    bounds = []
    for name, scale in (
        ("minInValue", scale_in),
        ("maxInValue", scale_in),
        ("minOutValue", scale_out),
        ("maxOutValue", scale_out),
    ):
        child = node.find(name)
        if child is None:
            raise LUTFormatError(
                source, node.line, f"Range without {name}: only Ranges with all four bounds are supported"
            )
        text = _text(child)
        if not _NUMBER_RE.fullmatch(text) or not math.isfinite(float(text)):
            raise LUTFormatError(source, child.line, f"{name} {text[:40]!r} is not a finite number")
        bounds.append(float(text) / scale)
    try:
        return Range(*bounds, clamp=style == "Clamp")
    except ValueError as exc:
        raise LUTFormatError(source, node.line, str(exc)) from None


def parse_clf(content: bytes, source: str = "<string>", *, dtype: torch.dtype = torch.float32) -> LUTChain:
    """Parse the bytes of a ``.clf`` file as a :class:`LUTChain`. Raises :class:`LUTFormatError`."""
    root = _tree(content, source)
    if root.tag != "ProcessList":
        raise LUTFormatError(source, root.line, f"the root element is <{root.tag[:40]}>, not <ProcessList>")
    steps, comments, interpolations = [], [], {}
    previous = None
    for node in root.children:
        if node.tag in _METADATA:
            if node.tag == "Description" and _text(node):
                comments.append(_text(node))
            continue
        if node.tag not in _NODES:
            raise LUTFormatError(
                source,
                node.line,
                f"<{node.tag[:40]}> is not supported (read: "
                f"{', '.join(_NODES)}; metadata: {', '.join(_METADATA)})",
            )
        depth_in, depth_out = _bit_depth(source, node, "inBitDepth"), _bit_depth(source, node, "outBitDepth")
        if previous is not None and depth_in != previous:
            raise LUTFormatError(
                source,
                node.line,
                f"inBitDepth {depth_in} differs from the previous node's outBitDepth {previous}",
            )
        previous = depth_out
        scale_in, scale_out = BIT_DEPTHS[depth_in], BIT_DEPTHS[depth_out]
        if node.tag == "LUT1D":
            steps.append(_lut1d(source, node, scale_out, dtype))
        elif node.tag == "LUT3D":
            if "interpolation" in node.attrs:
                interpolations[len(steps)] = node.attrs["interpolation"]
            steps.append(_lut3d(source, node, scale_out, dtype))
        elif node.tag == "Matrix":
            steps.append(_matrix(source, node, scale_in, scale_out))
        else:
            steps.append(_range(source, node, scale_in, scale_out))
    if not steps:
        raise LUTFormatError(source, root.line, "the ProcessList holds no LUT1D, LUT3D, Matrix or Range")
    return LUTChain(steps, title=root.attrs.get("name"), comments=comments, interpolations=interpolations)


# ----------------------------------------------------------------------------------------------- writing


def _domain_steps(domain) -> list:
    """The steps that map ``domain`` ``(min_rgb, max_rgb)`` onto [0, 1], clamped (none for [0, 1])."""
    lo, hi = domain
    if tuple(lo) == (0.0, 0.0, 0.0) and tuple(hi) == (1.0, 1.0, 1.0):
        return []
    if len(set(lo)) == 1 and len(set(hi)) == 1:
        return [Range(lo[0], hi[0], 0.0, 1.0)]
    m = torch.zeros(3, 4, dtype=torch.float64)
    for c in range(3):
        m[c, c] = 1 / (hi[c] - lo[c])
        m[c, 3] = -lo[c] / (hi[c] - lo[c])
    return [Matrix(m), Range(0.0, 1.0, 0.0, 1.0)]


def _steps(lut) -> list[tuple]:
    """``(step, interpolation or None)`` in order: a CubeLUT split into domain steps and single tables."""
    if isinstance(lut, torch.Tensor):
        check_lut(lut)
        if lut.dim() != 4:
            raise ValueError(f"write one LUT (D,D,D,3) per file, got shape {tuple(lut.shape)}")
        return [(CubeLUT(lut), None)]
    if isinstance(lut, LUTChain):
        out = []
        for i, step in enumerate(lut.steps):
            if isinstance(step, Curves):
                raise ValueError(
                    "a .clf file has no Cinespace pre-LUT curve (convert with --bake to sample "
                    "the whole transform)"
                )
            if isinstance(step, CubeLUT):
                out += [
                    (s, lut.interpolations.get(i) if s.lut3d is not None else None) for s, _ in _steps(step)
                ]
            else:
                out.append((step, None))
        return out
    out = []
    if lut.shaper is not None:
        out += _domain_steps(lut.shaper_domain) + [CubeLUT(None, lut.shaper)]
    if lut.lut3d is not None:
        out += _domain_steps(lut.lut3d_domain) + [CubeLUT(lut.lut3d)]
    return [(s, None) for s in out]


def _numbers(values: torch.Tensor, precision: int, per_line: int) -> str:
    flat = values.detach().to(torch.float64).cpu().reshape(-1)
    if not torch.isfinite(flat).all():
        raise ValueError("cannot write a LUT with NaN or infinite values")
    text = [f"{v:.{precision}f}" for v in flat.tolist()]
    return "\n".join(" ".join(text[i : i + per_line]) for i in range(0, len(text), per_line))


def _node(step, interpolation: str | None, precision: int, index: int) -> str:
    attrs = f'id="{index}" inBitDepth="32f" outBitDepth="32f"'
    if isinstance(step, Range):
        style = "" if step.clamp else ' style="noClamp"'
        bounds = "".join(
            f"    <{n}>{v:.{precision}f}</{n}>\n"
            for n, v in (
                ("minInValue", step.min_in),
                ("maxInValue", step.max_in),
                ("minOutValue", step.min_out),
                ("maxOutValue", step.max_out),
            )
        )
        return f"  <Range {attrs}{style}>\n{bounds}  </Range>\n"
    if isinstance(step, Matrix):
        return (
            f'  <Matrix {attrs}>\n    <Array dim="3 4">\n{_numbers(step.matrix, precision, 4)}\n'
            "    </Array>\n  </Matrix>\n"
        )
    if step.lut3d is not None:
        d = step.lut3d.shape[0]
        table = step.lut3d.permute(2, 1, 0, 3)  # ours [b, g, r] -> file [r, g, b], blue fastest
        fixed = f' interpolation="{interpolation}"' if interpolation else ""
        return (
            f'  <LUT3D {attrs}{fixed}>\n    <Array dim="{d} {d} {d} 3">\n'
            f"{_numbers(table, precision, 3)}\n    </Array>\n  </LUT3D>\n"
        )
    n = step.shaper.shape[0]
    return (
        f'  <LUT1D {attrs}>\n    <Array dim="{n} 3">\n{_numbers(step.shaper, precision, 3)}\n'
        "    </Array>\n  </LUT1D>\n"
    )


def clf_text(lut: torch.Tensor | CubeLUT | LUTChain, *, precision: int = 6, title: str | None = None) -> str:
    """The text of a CLF 3.0 file for a ``(D,D,D,3)`` table, a CubeLUT (its domains as Range nodes, or a
    Matrix and a Range where the channels differ) or a LUTChain without Curves; all nodes 32f."""
    check_precision(precision)
    steps = _steps(lut)
    title = title if title is not None else getattr(lut, "title", None)
    comments = getattr(lut, "comments", [])
    name = f" name={quoteattr(title)}" if title else ""
    head = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ProcessList compCLFversion="3.0" id="lutkern"{name}>\n'
        + "".join(f"  <Description>{escape(c)}</Description>\n" for c in comments if c)
    )
    return (
        head
        + "".join(_node(s, how, precision, i + 1) for i, (s, how) in enumerate(steps))
        + "</ProcessList>\n"
    )
