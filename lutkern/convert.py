"""Convert a LUT file to another format: ``python -m lutkern.convert IN OUT [--bake N]``.

``IN``: any LUT file :func:`lutkern.read_lut` reads (``.cube``, ``.3dl``, ``.spi1d``, ``.spi3d``, ``.csp``,
``.clf``), a Hald CLUT image or a built-in look; ``OUT``: a LUT file, its format named by its extension
(or ``--format``). The content is carried over exactly where the output format holds it (a shaper, a
domain, a CLF's steps); where it cannot (a shaper in a ``.3dl``, a CLF Matrix in a ``.cube``) the
command says so in one line, and ``--bake N`` samples the whole transform on an N-point lattice over
[0, 1] instead (exact at the lattice points, trilinear between them). ``.3dl`` codes are integers
(``--bits``, default 12): values are rounded to them, and clamped to [0, 1] with a warning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import CommandParser, int_in, run_command
from .files import check_output
from .formats import FORMATS, bake, lut_format, write_lut
from .grading import load_lut

PROG = "python -m lutkern.convert"


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("input", metavar="IN", help="a LUT file, a Hald CLUT .png/.tif, or a built-in look")
    p.add_argument("output", type=Path, metavar="OUT", help=f"the LUT file to write ({', '.join(FORMATS)})")
    p.add_argument("--format", help="the output format when OUT's extension does not name it (e.g. 3dl)")
    p.add_argument("--bake", type=int_in(2, 256), metavar="N",
                   help="sample the whole transform on an N^3 lattice (for a format that cannot hold it)")
    p.add_argument("--size", type=int_in(2, 256), default=33, help="LUT size of a built-in look (default 33)")
    p.add_argument("--precision", type=int_in(1, 17), help="decimals of the values written (default 6)")
    p.add_argument("--bits", type=int, choices=(8, 10, 12, 16), help=".3dl output bit depth (default 12)")
    p.add_argument("--variant", choices=("flame", "lustre"), help=".3dl layout (default flame)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT (never IN)")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_command(_parser(), argv, _run)


def _options(args: argparse.Namespace, fmt: str) -> dict:
    """The writer options the user gave, refused where ``fmt`` has no such option."""
    options = {}
    if args.precision is not None:
        if fmt == ".3dl":
            raise ValueError("--precision: a .3dl holds integer codes (see --bits)")
        options["precision"] = args.precision
    for flag, name in (("bits", "output_bits"), ("variant", "variant")):
        if getattr(args, flag) is not None:
            if fmt != ".3dl":
                raise ValueError(f"--{flag} applies to .3dl only, not {fmt}")
            options[name] = getattr(args, flag)
    return options


def _run(args: argparse.Namespace) -> int:
    fmt = lut_format(args.output, args.format)
    options = _options(args, fmt)
    check_output(args.output, [args.input], overwrite=args.overwrite)
    lut = load_lut(args.input, args.size)
    if args.bake is not None:
        lut = bake(lut, args.bake)
    write_lut(args.output, lut, fmt, **options)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
