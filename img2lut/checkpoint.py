"""Model files: the only module that reads or writes them.

A checkpoint is one ``torch.save`` dict of tensors and plain Python values (so it loads with
``weights_only=True``, which never runs code from the file)::

    format        CHECKPOINT_FORMAT
    model_config  ResNetLUTGenerator constructor arguments (lut_size, interpolation, init)
    model         the model's state dict
    config        the full training configuration (a dict of str/int/float/bool/None)
    state         training progress: optimizer, scheduler, epoch, step, RNG states, history, ...

Files are written atomically (a temporary file in the same folder, then ``os.replace``), so an
interrupted write never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lutkern._atomic import atomic_open

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
    with atomic_open(path, "wb") as f:
        torch.save(payload, f)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; CheckpointError when missing, unreadable or foreign."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle, zip and unpickler-policy errors all mean "not a usable checkpoint"
        # torch's unpickler errors run over many lines of advice (to load unsafely); keep the first.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {first})") from exc
    if not isinstance(payload, dict) or any(k not in payload for k in _REQUIRED):
        raise CheckpointError(f"{path}: not an img2lut checkpoint (expected keys {', '.join(_REQUIRED)})")
    if payload["format"] != CHECKPOINT_FORMAT:
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


def model_from_checkpoint(payload: dict) -> ResNetLUTGenerator:
    """The model a checkpoint holds, with its weights loaded, in eval mode."""
    try:
        model = ResNetLUTGenerator(**payload["model_config"])
        model.load_state_dict(payload["model"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint does not hold a valid model ({exc})") from exc
    return model.eval()
