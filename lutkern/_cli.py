"""What every command line shares: errors on one line, and the ``--device`` / ``--backend`` check."""

from __future__ import annotations

import re

import torch

from ._backend import triton_unusable_reason

_MAX_ERROR_CHARS = 400
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(exc: BaseException | str) -> str:
    """An error message on one line (whitespace runs and terminal escapes collapsed), for the command line."""
    text = " ".join(_ANSI.sub("", str(exc)).split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


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
