"""Public LUT application API: input checks, shape normalisation and backend dispatch."""

from __future__ import annotations

import torch

from ._backend import resolve_backend
from .ops.apply_lut_cpu import apply_lut_cpu, native_available
from .ops.apply_lut_torch import apply_lut_torch

INTERPOLATIONS = ("trilinear", "tetrahedral", "nearest")  # the modes of apply_lut
MIN_LUT_SIZE, MAX_LUT_SIZE = 2, 256
_IMAGE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def identity_lut(size: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
    """The identity LUT ``(D,D,D,3)``: ``lut[b, g, r] == (r, g, b) / (D - 1)``."""
    if not isinstance(size, int) or not MIN_LUT_SIZE <= size <= MAX_LUT_SIZE:
        raise ValueError(f"LUT size must be an int in [{MIN_LUT_SIZE}, {MAX_LUT_SIZE}], got {size!r}")
    ramp = torch.linspace(0, 1, size, dtype=dtype, device=device)
    b, g, r = torch.meshgrid(ramp, ramp, ramp, indexing="ij")
    return torch.stack([r, g, b], dim=-1)


def check_lut(lut: torch.Tensor, name: str = "lut") -> None:
    """Raise a TypeError/ValueError naming the problem unless ``lut`` is ``(D,D,D,3)`` or ``(B,D,D,D,3)``."""
    if not isinstance(lut, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(lut).__name__}")
    if not lut.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {lut.dtype}")
    if lut.dim() not in (4, 5):
        raise ValueError(f"{name} must have shape (D,D,D,3) or (B,D,D,D,3), got {tuple(lut.shape)}")
    if lut.shape[-1] != 3:
        raise ValueError(f"{name} last dimension must be 3 (RGB), got shape {tuple(lut.shape)}")
    d = lut.shape[-2]
    if lut.shape[-4] != d or lut.shape[-3] != d:
        raise ValueError(f"{name} must be cubic (D,D,D,3), got shape {tuple(lut.shape)}")
    if not MIN_LUT_SIZE <= d <= MAX_LUT_SIZE:
        raise ValueError(
            f"{name} size D must be in [{MIN_LUT_SIZE}, {MAX_LUT_SIZE}], got shape {tuple(lut.shape)}"
        )


def _check_inputs(image: torch.Tensor, lut: torch.Tensor, interpolation: str) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dtype not in _IMAGE_DTYPES:
        raise TypeError(f"image dtype must be one of float16/bfloat16/float32/float64, got {image.dtype}")
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"image must have shape (3,H,W) or (B,3,H,W), got {tuple(image.shape)}")
    check_lut(lut)
    if lut.dim() == 5 and image.dim() == 3:
        raise ValueError(
            f"a batch of LUTs {tuple(lut.shape)} needs a batch of images (B,3,H,W), got {tuple(image.shape)}"
        )
    if lut.dim() == 5 and lut.shape[0] != image.shape[0]:
        raise ValueError(
            f"batch mismatch: image {tuple(image.shape)} has {image.shape[0]} images, "
            f"lut {tuple(lut.shape)} has {lut.shape[0]} LUTs "
            "(pass one LUT per image, or a single (D,D,D,3) LUT to share)"
        )
    if image.device != lut.device:
        raise ValueError(f"image is on {image.device} but lut is on {lut.device}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")


def _check_out(out, image: torch.Tensor, lut: torch.Tensor) -> None:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out must be a torch.Tensor, got {type(out).__name__}")
    if out.shape != image.shape or out.dtype != image.dtype or out.device != image.device:
        raise ValueError(
            f"out must match the image: got {tuple(out.shape)} {out.dtype} on {out.device}, "
            f"image {tuple(image.shape)} {image.dtype} on {image.device}"
        )
    if not out.is_contiguous():
        raise ValueError("out must be contiguous")
    # Empty tensors have no memory to share (their data pointers are all 0).
    shared = any(out.untyped_storage().data_ptr() == t.untyped_storage().data_ptr() for t in (image, lut))
    if out.numel() and shared:
        raise ValueError("out must not share memory with the image or the LUT")
    if torch.is_grad_enabled() and (image.requires_grad or lut.requires_grad or out.requires_grad):
        raise RuntimeError("apply_lut(out=...) does not record gradients: call it under torch.no_grad()")


# Under torch.compile the op runs as it is, between graphs: both backends are already fused by hand,
# and tracing into the torch fallback (chunk loops, worker threads) only hits the recompile limit.
@torch.compiler.disable
def apply_lut(
    image: torch.Tensor,
    lut: torch.Tensor,
    *,
    interpolation: str = "trilinear",
    backend: str | None = None,
    out: torch.Tensor | None = None,
):
    """Apply a 3D LUT to an image batch, differentiably with respect to both.

    image: ``(B,3,H,W)`` or ``(3,H,W)`` RGB, float16/bfloat16/float32 (float64 on the torch backend),
        nominal range [0, 1]; values outside are clamped to the LUT edge, a NaN pixel gives NaN.
    lut: ``(B,D,D,D,3)`` one LUT per image, or ``(D,D,D,3)`` shared; ``lut[..., b, g, r, c]``, red index
        fastest in memory (the ``.cube`` row order). 2 <= D <= 256. Any float dtype: with float64 on either
        side the automatic choice is the torch backend.
    interpolation: ``"trilinear"``, ``"tetrahedral"`` or ``"nearest"``.
    backend: None (automatic), ``"triton"`` or ``"torch"``; see :mod:`lutkern._backend`. On CPU tensors
        the torch backend runs a compiled C loop (:mod:`lutkern.ops.apply_lut_cpu`) when a C compiler is
        available and ``LUTKERN_NATIVE`` is not 0, else eager torch ops.
    out: optional contiguous tensor of the image's shape, dtype and device, not sharing memory with the
        inputs, to write the result into (reusing a buffer saves allocating and first touching a fresh
        output, a large part of a CPU call); no autograd, as torch's ``out=`` ops.
    Returns the graded image, same shape and dtype as ``image`` (empty when H, W or B is 0; ``out``
    itself when given).
    """
    _check_inputs(image, lut, interpolation)
    if out is not None:
        _check_out(out, image, lut)
    unbatched = image.dim() == 3
    img = image.unsqueeze(0) if unbatched else image
    lut5 = lut.unsqueeze(0) if lut.dim() == 4 else lut
    float64 = torch.float64 in (image.dtype, lut.dtype)
    dst = None if out is None else out.view(img.shape)
    unsupported = "the Triton kernels do not take float64" if float64 else None
    which = resolve_backend(backend, image.device, unsupported)
    if img.numel() == 0:  # no pixel (or no image): an empty result, on every backend
        result = img + 0 * lut5.sum().to(img.dtype)  # still connected to the LUT: its gradient is zero
    elif which == "triton":
        from .ops.apply_lut_triton import apply_lut_triton

        result = apply_lut_triton(img, lut5, interpolation, out=dst)
    elif img.device.type == "cpu" and native_available():
        result = apply_lut_cpu(img, lut5, interpolation, out=dst)
    else:
        result = apply_lut_torch(img, lut5, interpolation)
        if dst is not None:
            result = dst.copy_(result)
    if out is not None:
        return out
    return result.squeeze(0) if unbatched else result


def resample_lut(lut: torch.Tensor, size: int) -> torch.Tensor:
    """Resample ``lut`` ``(D,D,D,3)`` to ``(size,size,size,3)`` by trilinear interpolation (exact for
    lattice points shared by both sizes)."""
    check_lut(lut)
    grid = (
        identity_lut(size, dtype=lut.dtype, device=lut.device)
        .permute(3, 0, 1, 2)
        .reshape(3, size * size, size)
    )
    out = apply_lut(grid, lut, interpolation="trilinear", backend="torch")
    return out.reshape(3, size, size, size).permute(1, 2, 3, 0).contiguous()
