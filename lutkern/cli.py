"""What every command line of the project shares (``python -m lutkern.apply`` and ``python -m
img2lut.train|fit|evaluate|predict``): one parser style, one error convention, one ``--device`` rule, one
console.

- :class:`CommandParser`: usage errors are one line, ``PROG: error: MESSAGE (see --help)``, exit status 2.
- :func:`run_command`: parses, then runs the command's body; an expected error (bad input: ValueError,
  OSError) becomes one line ``PROG: error: MESSAGE`` and exit status 2, warnings one line each
  ``PROG: warning: MESSAGE``, Ctrl-C one line ``PROG: interrupted`` and exit status 130 (the body's
  writes clean up after themselves: :mod:`lutkern.files`). Messages go through :func:`one_line`.
- :func:`add_device_flags`: ``--device`` (:func:`default_device`: ``cuda`` when this machine has it) and
  ``--backend`` (:func:`lutkern.apply_lut`'s), checked by :func:`check_device` before any work.
- :func:`console`: progress bars and messages on stderr (results a command prints go to stdout).
- :func:`process_files`: the per-file loop of the batch commands, one error line per failed file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ._backend import BACKENDS, require_triton

if TYPE_CHECKING:
    import torch

_MAX_ERROR_CHARS = 400
_LINE_BREAKS = re.compile(r"\s*[\n\r\t\v\f]\s*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
EXPECTED_ERRORS = (ValueError, OSError)  # bad input; anything else is a bug and keeps its traceback
INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C (128 + SIGINT, as shells report it)


def one_line(exc: BaseException | str) -> str:
    """A message on one line for the command line: line breaks (and the blanks around them) become one
    space, other control characters (terminal escapes too) are shown as ``\\xNN``, so a file name can
    neither break the line nor drive the terminal; other spaces are kept, so names stay exact."""
    text = _LINE_BREAKS.sub(" ", str(exc)).strip()
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


class CommandParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, ``PROG: error: MESSAGE (see --help)``, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see --help)\n")


def int_in(low: int, high: int):
    """An argparse ``type``: an int in [low, high], else a one-line usage error naming the range."""
    return _in_range(int, "an integer", low, high)


def float_in(low: float, high: float):
    """An argparse ``type``: a finite float in [low, high] (no nan, no inf), else a one-line usage error."""
    return _in_range(float, "a number", low, high)


def _in_range(kind: type, what: str, low, high):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not low <= value <= high:  # false for nan too
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    parse.__name__ = what.split()[-1]  # how argparse names the type in its own messages
    return parse


# The LUT file formats that hold a 3D table (lutkern.formats), which the commands export learned LUTs to.
LUT_3D_FORMATS = (".cube", ".3dl", ".spi3d", ".csp", ".clf")


def lut_format_arg(text: str) -> str:
    """An argparse ``type``: a 3D LUT format, with or without its dot (``3dl``, ``.clf``), as ``".3dl"``."""
    ext = "." + text.lower().removeprefix(".")
    if ext not in LUT_3D_FORMATS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a 3D LUT format ({', '.join(LUT_3D_FORMATS)})")
    return ext


lut_format_arg.__name__ = "format"


def add_format_flag(parser: argparse.ArgumentParser, default: str | None = ".cube", what: str = "") -> None:
    """``--format FMT``: the LUT file format a command writes (:data:`LUT_3D_FORMATS`)."""
    parser.add_argument("--format", type=lut_format_arg, default=default, metavar="FMT",
                        help=f"LUT file format{what}: {', '.join(f[1:] for f in LUT_3D_FORMATS)} "
                        f"(default {default[1:] if default else 'the extension of --out'})")


def add_strength_flag(parser: argparse.ArgumentParser) -> None:
    """``--strength S``, the same on every command that applies a LUT
    (:func:`lutkern.grading.at_strength`)."""
    parser.add_argument("--strength", type=float_in(0, 1), default=1.0, metavar="S",
                        help="apply the LUT at strength S, 0-1: each pixel moves S of the way from its "
                        "value to its graded value (default 1)")


def console() -> Console:
    """The console of every command: stderr, one message per line (soft wrap), no markup guessing."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(prog: str, exc: BaseException | str) -> int:
    """Print ``PROG: error: MESSAGE`` (one line) on stderr; returns the exit status 2."""
    print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
    return 2


@contextlib.contextmanager
def warnings_on_one_line(prog: str):
    """Inside the block, each warning is printed as one line, ``PROG: warning: MESSAGE``, on stderr."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {one_line(message)}", file=file or sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None,
                body: Callable[[argparse.Namespace], int], errors: tuple = EXPECTED_ERRORS) -> int:
    """Parse ``argv`` and return ``body(args)``'s exit status; ``errors`` raised by it are one line and
    status 2 (see the module docstring)."""
    args = parser.parse_args(argv)
    with warnings_on_one_line(parser.prog):
        try:
            return body(args)
        except errors as exc:
            return fail(parser.prog, exc)
        except KeyboardInterrupt:
            print(f"{parser.prog}: interrupted", file=sys.stderr)
            return INTERRUPTED


def default_device() -> str:
    """The ``--device`` of every command when none is given: ``cuda`` where there is one, else ``cpu``.

    A Linux machine without the NVIDIA or AMD GPU driver has no CUDA device: that is found without
    importing torch (1-2 s), which a command on the CPU may not need at all (:mod:`lutkern.apply`)."""
    drivers = ("/proc/driver/nvidia/version", "/dev/kfd")  # NVIDIA; AMD's, which ROCm torch calls cuda
    if sys.platform.startswith("linux") and not any(os.path.exists(p) for p in drivers):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_device_flags(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """``--device`` and ``--backend``, the same on every command. ``defaults=False`` leaves them None
    when not given (for a command that tells given flags from its presets' values)."""
    parser.add_argument("--device", default=default_device() if defaults else None,
                        help=f"cpu, cuda, cuda:1, ... (default: {default_device()}, cuda when available)")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="apply_lut backend (default: automatic, Triton on CUDA, else torch)")


def check_device(spec: str, backend: str | None = None) -> torch.device:
    """The device ``--device spec`` names; ValueError (one line) when this machine cannot run it, or
    cannot run ``--backend triton`` on it."""
    import torch

    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"--device {spec!r} is not a device ({one_line(exc)})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {spec}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA devices")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {spec}: only cpu and cuda devices are supported")
    if backend == "triton":
        try:
            require_triton(device, f"--backend triton on {device}")
        except RuntimeError as exc:
            raise ValueError(str(exc)) from None
    return device


def process_files(paths, process, out: Console, *, label: str, errors=EXPECTED_ERRORS) -> int:
    """Run ``process(path, on_strip)`` on each path under a progress bar, reporting errors per file.

    ``process`` returns a note for the console ('' for none) and may call ``on_strip(fraction)`` as it
    goes. An exception of ``errors`` is printed as one line, ``error: FILE: MESSAGE`` (the file named
    once), and the batch goes on. Returns the number of files that failed.
    """
    failed = 0
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=out) as progress:
        task = progress.add_task(label, total=len(paths))
        for src in paths:
            progress.update(task, description=one_line(f"{label} {src.name}"))
            done_before = progress.tasks[task].completed
            try:
                note = process(src, lambda f: progress.advance(task, f))
                if note:
                    progress.console.print(one_line(f"{src}: {note}"), markup=False)
            except errors as exc:
                failed += 1
                text = str(exc) if str(src) in str(exc) else f"{src}: {exc}"
                progress.console.print(f"error: {one_line(text)}", markup=False)
            progress.update(task, completed=done_before + 1)
    return failed
