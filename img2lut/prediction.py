"""A trained model ready to predict: :func:`load` reads a checkpoint (``model.pt`` or a run's
``checkpoint.pt``: the model the run kept) and returns a :class:`LUTPredictor`.

For each image the CNN sees a small copy made as in training (resized to the checkpoint's
``image_size``, then to its ``cnn_size``), and its head reads the statistics of the full-size image
(:mod:`img2lut.image_stats`). From a file, the small copy is made strip by strip from the integer codes
(:func:`thumbnail_from_codes`) and the statistics are counted on the codes, never from a full-size float
copy.

    import img2lut
    model = img2lut.load("runs/models/demo/model.pt")
    lut = model.predict_lut(image)      # (3,H,W) -> (S,S,S,3); (B,3,H,W) -> (B,S,S,S,3); or a file path
    graded = model.apply(image)         # the predicted LUT applied to image
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import lutkern
from lutkern.grading import STRIP_PIXELS
from lutkern.imageio import codes_to_pixels, decode_image, is_float_image, read_float_image

from . import checkpoint as ckpt
from .data import resize
from .image_stats import codes_stats, image_stats
from .model import ResNetLUTGenerator

_MIN_CNN_SIZE = 16  # three stride-2 blocks; as in training


def thumbnail_from_codes(codes: np.ndarray, bit_depth: int, size: int,
                         strip_pixels: int = STRIP_PIXELS) -> torch.Tensor:
    """``(1,3,size,size)`` float32: :func:`img2lut.data.resize` of the image ``codes`` ``(H,W,3)``.

    Antialiased bilinear resizing is separable: each strip of rows is resized horizontally, then the
    ``(H,size)`` result vertically, which equals resizing the whole float image (bitwise on CPU) while
    only one float strip exists at a time.
    """
    h, w, _ = codes.shape
    rows = max(1, strip_pixels // max(w, 1))
    parts = []
    for y in range(0, h, rows):
        strip = codes_to_pixels(codes[y : y + rows], bit_depth).unsqueeze(0)
        parts.append(F.interpolate(strip, size=(strip.shape[2], size), mode="bilinear", antialias=True,
                                   align_corners=False))
    return resize(torch.cat(parts, dim=2), size)


@dataclass
class LUTPredictor:
    """A trained model ready to predict LUTs: what :func:`load` returns.

    model: the CNN in eval mode on ``device``. image_size, cnn_size: the training sizes; the CNN sees an
    image resized to ``image_size`` then to ``cnn_size`` (square, aspect not kept), as in training.
    """

    model: ResNetLUTGenerator
    image_size: int
    cnn_size: int
    device: torch.device

    @property
    def lut_size(self) -> int:
        return self.model.lut_size

    @property
    def interpolation(self) -> str:
        """The interpolation the model was trained with."""
        return self.model.interpolation

    def cnn_input(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,3,cnn_size,cnn_size)`` on ``device``: what the CNN sees of ``images`` ``(B,3,H,W)``."""
        return resize(resize(images.float(), self.image_size), self.cnn_size).to(self.device)

    @torch.no_grad()
    def predict_lut(self, image: torch.Tensor | str | os.PathLike) -> torch.Tensor:
        """The LUT predicted for ``image``, float32, ``lut[..., b, g, r, c]`` (in (0,1) for the direct
        head; the basis and curves heads' values may leave [0,1] a little, and are applied and exported
        as they are).

        image: ``(3,H,W)`` -> ``(S,S,S,3)``; ``(B,3,H,W)`` -> ``(B,S,S,S,3)`` (RGB float in [0,1], on any
        device; the LUT is returned on the image's device); or the path of an image file -> ``(S,S,S,3)``
        on the CPU (decoded as :func:`lutkern.imageio.read_image` does, without a full-size float copy
        but for an EXR).
        """
        if isinstance(image, (str, os.PathLike)):
            if is_float_image(image):  # an EXR: its floats as stored, as a training pair's are read
                return self.predict_lut(read_float_image(image).pixels)
            decoded = decode_image(image)
            return self.predict_lut_codes(decoded.codes, decoded.bit_depth)
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"image must be a tensor or a file path, got {type(image).__name__}")
        if image.dim() not in (3, 4) or image.shape[-3] != 3 or not image.is_floating_point():
            raise ValueError(f"image must be float (3,H,W) or (B,3,H,W), got {image.dtype} "
                             f"{tuple(image.shape)}")
        batch = image if image.dim() == 4 else image.unsqueeze(0)
        lut = self.model.predict_lut(self.cnn_input(batch), image_stats(batch.float())).to(image.device)
        return lut if image.dim() == 4 else lut[0]

    def thumbnail(self, codes: np.ndarray, bit_depth: int) -> torch.Tensor:
        """``(1,3,cnn_size,cnn_size)`` on ``device``: what the CNN sees of an image given as ``(H,W,3)``
        uint8/uint16 ``codes`` (made strip by strip, :func:`thumbnail_from_codes`)."""
        return self.cnn_input(thumbnail_from_codes(codes, bit_depth, self.image_size))

    @torch.no_grad()
    def predict_lut_codes(self, codes: np.ndarray, bit_depth: int) -> torch.Tensor:
        """``(S,S,S,3)`` on the CPU for an image given as ``(H,W,3)`` uint8/uint16 ``codes``."""
        stats = codes_stats(codes, bit_depth)
        return self.model.predict_lut(self.thumbnail(codes, bit_depth), stats)[0].cpu()

    def apply(self, image: torch.Tensor, interpolation: str | None = None) -> torch.Tensor:
        """``image`` ``(3,H,W)`` or ``(B,3,H,W)`` graded by the LUT predicted for it (same shape)."""
        lut = self.predict_lut(image)
        return lutkern.apply_lut(image, lut, interpolation=interpolation or self.interpolation,
                                 backend=self.model.backend)


def _size_setting(checkpoint, config: dict, key: str, default: int) -> int:
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ckpt.CheckpointError(f"{checkpoint}: the training config has an invalid {key}: {value!r}")
    return value


def load(checkpoint: str | os.PathLike, device: str | torch.device | None = None) -> LUTPredictor:
    """Load a trained model from ``checkpoint`` (read with ``weights_only=True``) onto ``device``
    (default: CUDA when available, else the CPU).

    Raises :class:`img2lut.checkpoint.CheckpointError` for a missing, corrupt or foreign file, or
    weights that do not fit the architecture the file declares (e.g. another LUT size).
    """
    device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
    try:
        payload = ckpt.load_checkpoint(checkpoint)
    except ckpt.CheckpointError as exc:
        if isinstance(exc.__cause__, pickle.UnpicklingError):  # instead of torch's advice to load it unsafely
            raise ckpt.CheckpointError(
                f"{checkpoint}: not an img2lut checkpoint (not a torch file, or it holds objects other than "
                "tensors and plain values, which are never loaded)") from exc
        raise
    try:
        model = ckpt.model_from_checkpoint(payload)
    except ckpt.CheckpointError as exc:
        raise ckpt.CheckpointError(f"{checkpoint}: {exc}") from exc
    config = payload["config"] if isinstance(payload["config"], dict) else {}
    image_size = _size_setting(checkpoint, config, "image_size", 256)
    cnn_size = _size_setting(checkpoint, config, "cnn_size", 0) or image_size
    if min(image_size, cnn_size) < _MIN_CNN_SIZE:
        raise ckpt.CheckpointError(f"{checkpoint}: image_size {image_size} / cnn_size {cnn_size} below "
                                   f"{_MIN_CNN_SIZE}")
    return LUTPredictor(model.to(device), image_size, cnn_size, device)
