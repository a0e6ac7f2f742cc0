"""Model files: the only module that reads or writes them.

A checkpoint is one ``torch.save`` dict of tensors and plain Python values (so it loads with
``weights_only=True``, which never runs code from the file)::

    format        CHECKPOINT_FORMAT
    model_config  ResNetLUTGenerator constructor arguments (lut_size, interpolation, init, head, basis_luts)
    model         the model's state dict
    config        the full training configuration (a dict of str/int/float/bool/None)
    state         training progress: optimizer, scheduler, epoch, step, RNG states, history, and ``best``
                  (the epoch kept by --select-best and its weights: what prediction uses); None in model.pt

Files are written atomically (a temporary file in the same folder, then ``os.replace``), so an
interrupted write never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

import torch

from lutkern.files import atomic_open

from .model import ResNetLUTGenerator

CHECKPOINT_NAME = "checkpoint.pt"
# The kept model alone (no optimizer or training state): what prediction needs, a fraction of the size.
MODEL_NAME = "model.pt"
CHECKPOINT_FORMAT = 1
_REQUIRED = ("format", "model_config", "model", "config")


class CheckpointError(ValueError):
    """An unreadable or incompatible checkpoint; command-line tools print it as one line."""


def save_checkpoint(path: str | Path, *, model: ResNetLUTGenerator, config: dict,
                    state: dict | None = None) -> None:
    """Atomically write ``model`` (+ its constructor config), the run ``config`` and training ``state``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "model_config": model.config(), "model": model.state_dict(),
               "config": config, "state": state}
    try:
        with _sigint_deferred(), atomic_open(path, "wb") as f:
            torch.save(payload, f)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
        raise CheckpointError(f"{path}: cannot write the checkpoint ({exc})") from exc


@contextlib.contextmanager
def _sigint_deferred():
    """Hold a Ctrl-C that arrives inside the block until it is done, then hand it to the handler that was
    installed (KeyboardInterrupt by default): a second Ctrl-C never cuts a checkpoint write short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held and callable(previous):
        previous(signal.SIGINT, held[0])


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; CheckpointError when missing, unreadable or foreign."""
    path = Path(path)
    if not path.is_file():
        what = "not a regular file" if path.exists() else "no such checkpoint file"
        raise CheckpointError(f"{path}: {what}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle, zip and unpickler-policy errors all mean "not a usable checkpoint"
        # torch's unpickler errors run over many lines of advice (to load unsafely); keep the first.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {first})") from exc
    if not isinstance(payload, dict) or any(k not in payload for k in _REQUIRED):
        raise CheckpointError(f"{path}: not an img2lut checkpoint (expected keys {', '.join(_REQUIRED)})")
    if not isinstance(payload["format"], int) or payload["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {payload['format']} is not supported "
                              f"(this version reads format {CHECKPOINT_FORMAT})")
    return payload


def check_architecture(payload: dict, model_config: dict, source: str = "checkpoint") -> None:
    """Raise CheckpointError naming every constructor argument that differs from the checkpoint's."""
    saved = payload["model_config"]
    diffs = [f"{k}: {source} has {saved.get(k)!r}, requested {v!r}" for k, v in model_config.items()
             if saved.get(k) != v]
    if diffs:
        raise CheckpointError(f"{source} was trained with a different architecture ({'; '.join(diffs)})")


def kept_weights(payload: dict):
    """The weights a checkpoint predicts with: those of the epoch training kept (``state["best"]``, written
    by ``--select-best``) when it records one, else its last ones (``payload["model"]``). So a run's
    ``checkpoint.pt`` and ``model.pt`` give the same model, the one its summary reports."""
    state = payload.get("state")
    best = state.get("best") if isinstance(state, dict) else None
    return best["model"] if isinstance(best, dict) and "model" in best else payload.get("model")


def check_weights(payload: dict, weights=None) -> None:
    """CheckpointError unless ``weights`` (default ``payload["model"]``) holds exactly the tensors (names,
    shapes, dtypes) that the model ``payload["model_config"]`` describes. The model is built on the meta
    device for this, so a small crafted file cannot make it allocate gigabytes before its weights are seen
    to be wrong."""
    config, weights = payload.get("model_config"), payload.get("model") if weights is None else weights
    if not isinstance(config, dict) or not isinstance(weights, dict):
        raise CheckpointError("checkpoint does not hold a valid model (model_config and model must be dicts)")
    try:
        with torch.device("meta"):
            expected = ResNetLUTGenerator(**config).state_dict()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint does not hold a valid model ({exc})") from exc
    missing, unexpected = sorted(expected.keys() - weights.keys()), sorted(weights.keys() - expected.keys())
    if missing or unexpected:
        raise CheckpointError(f"checkpoint does not hold a valid model (missing weights {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    for name, want in expected.items():
        got = weights[name]
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or got.dtype != want.dtype:
            found = f"{got.dtype} {tuple(got.shape)}" if isinstance(got, torch.Tensor) else type(got).__name__
            raise CheckpointError(f"checkpoint does not hold a valid model (size mismatch for {name}: the "
                                  f"file has {found}, model_config {config} needs {want.dtype} "
                                  f"{tuple(want.shape)})")
        # Every value stored: a broadcast view (stride 0) of a few bytes would let a tiny file declare a
        # model of gigabytes, which building it would then allocate.
        if got.untyped_storage().nbytes() < got.numel() * got.element_size():
            raise CheckpointError(f"checkpoint does not hold a valid model ({name} does not store its "
                                  f"{got.numel()} values)")


def model_from_checkpoint(payload: dict) -> ResNetLUTGenerator:
    """The model a checkpoint holds for prediction (:func:`kept_weights`), in eval mode; its weights are
    checked by :func:`check_weights` before anything is allocated."""
    weights = kept_weights(payload)
    check_weights(payload, weights)
    try:
        model = ResNetLUTGenerator(**payload["model_config"])
        model.load_state_dict(weights)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint does not hold a valid model ({exc})") from exc
    return model.eval()
