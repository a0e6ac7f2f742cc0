"""What every command line shares: a parser whose usage errors are one line, messages and warnings on one
line, bounded integer flags, and the ``--device`` / ``--backend`` check."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import warnings

import torch

from ._backend import triton_unusable_reason

_MAX_ERROR_CHARS = 400
_LINE_BREAKS = re.compile(r"\s*[\n\r\t\v\f]\s*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    parse.__name__ = "integer"
    return parse


@contextlib.contextmanager
def warnings_on_one_line(prog: str):
    """Inside the block, each warning is printed as one line, ``PROG: warning: MESSAGE``, on stderr."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {one_line(message)}", file=file or sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def check_device(spec: str, backend: str | None = None) -> torch.device:
    """The device ``--device spec`` names; ValueError (one line) when this machine cannot run it, or
    cannot run ``--backend triton`` on it."""
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
        reason = triton_unusable_reason(device, explicit=True)
        if reason is not None:
            raise ValueError(f"--backend triton on {device}: {reason}")
    return device
