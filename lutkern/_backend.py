"""Which implementation runs an op: Triton kernels or the plain-torch fallback.

Resolution order: the ``backend=`` argument, then the ``LUTKERN_BACKEND`` environment variable, then
the automatic choice: Triton on CUDA, torch otherwise. Triton's CPU interpreter (``TRITON_INTERPRET=1``)
runs only when asked for explicitly: it exists to test the kernels, and is orders of magnitude slower
than the torch backend's compiled CPU loop. An explicit ``"triton"`` that cannot run raises; the
automatic choice falls back to torch quietly (and logs once why Triton was not used).
"""

from __future__ import annotations

import functools
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # devices are only read here: choosing a backend on the CPU needs no torch
    import torch

BACKENDS = ("triton", "torch")
_log = logging.getLogger("lutkern")


def interpreter_enabled() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.cache
def triton_import_error() -> str | None:
    """Why Triton cannot be imported, or None when it can (computed once)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising anything else
        return f"{type(exc).__name__}: {exc}"
    return None


def triton_available() -> bool:
    return triton_import_error() is None


def triton_unusable_reason(device: torch.device, explicit: bool) -> str | None:
    """Why Triton cannot run on ``device`` (None when it can); on the CPU only an ``explicit`` request
    runs the interpreter."""
    # The device first: on the CPU the answer needs no import of Triton (about a second).
    if device.type == "cpu" and not interpreter_enabled():
        return "tensors are on the CPU and TRITON_INTERPRET=1 is not set"
    if device.type == "cpu" and not explicit:
        return "tensors are on the CPU (Triton's interpreter runs only when asked for: backend='triton')"
    if device.type not in ("cpu", "cuda"):
        return f"Triton does not support device {device}"
    err = triton_import_error()
    return None if err is None else f"Triton cannot be imported ({err})"


@functools.cache
def _log_fallback_once(reason: str) -> None:
    _log.info("lutkern: using the torch backend because %s", reason)


def resolve_backend(backend: str | None, device: torch.device, unsupported: str | None = None) -> str:
    """Return ``"triton"`` or ``"torch"`` for tensors on ``device``.

    ``backend`` is the caller's explicit choice (None = automatic). ``LUTKERN_BACKEND`` overrides the
    automatic choice only, and is validated like an explicit argument. ``unsupported`` is the caller's
    reason why the Triton kernels cannot take these inputs (e.g. float64): the automatic choice then
    uses torch; an explicit "triton" is left to the kernel, which raises with that reason.
    """
    source = "backend argument"
    if backend is None:
        backend = os.environ.get("LUTKERN_BACKEND") or None
        source = "LUTKERN_BACKEND"
    if backend is None:
        reason = unsupported or triton_unusable_reason(device, explicit=False)
        if reason is None:
            return "triton"
        _log_fallback_once(reason)
        return "torch"
    if backend not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS} or None, got {backend!r}")
    if backend == "triton":
        require_triton(device, f"backend='triton' was requested ({source})")
    return backend


def require_triton(device: torch.device, request: str) -> None:
    """RuntimeError ``"{request} but {why}"`` unless Triton can run on ``device``, explicitly asked for."""
    reason = triton_unusable_reason(device, explicit=True)
    if reason is not None:
        raise RuntimeError(f"{request} but {reason}")
