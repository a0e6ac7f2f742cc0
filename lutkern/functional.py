"""Public LUT application API: input checks, shape normalisation and backend dispatch."""

from __future__ import annotations

import functools
import sys

import torch

from ._backend import resolve_backend
from .conventions import INTERPOLATIONS, MAX_LUT_SIZE, MIN_LUT_SIZE
from .ops.apply_lut_cpu import apply_lut_cpu, native_available
from .ops.apply_lut_torch import apply_lut_torch

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


def check_strength(strength) -> None:
    """ValueError/TypeError unless ``strength`` is a number or a float tensor of numbers in [0, 1]."""
    if isinstance(strength, torch.Tensor):
        if not strength.is_floating_point():
            raise TypeError(f"strength must be a float tensor, got dtype {strength.dtype}")
        bad = ~((strength >= 0) & (strength <= 1))  # NaN is outside
        if bad.any():
            raise ValueError(f"strength must be in [0, 1], got {strength.detach()[bad].flatten()[0].item()}")
        return
    if isinstance(strength, bool) or not isinstance(strength, (int, float)):
        raise TypeError(f"strength must be a number or a tensor, got {type(strength).__name__}")
    if not 0 <= strength <= 1:  # NaN compares False
        raise ValueError(f"strength must be in [0, 1], got {strength}")


def lut_at_strength(lut: torch.Tensor, strength) -> torch.Tensor:
    """``lut`` blended with the identity: ``identity + strength * (lut - identity)``, differentiably.

    lut: ``(D,D,D,3)`` or ``(B,D,D,D,3)``. strength: a number in [0, 1], or a tensor of them, ``()`` or
    ``(B,)``: one strength per LUT of a batch, or per image of a shared LUT (the result is then
    ``(B,D,D,D,3)``). 0 gives the identity, 1 ``lut`` itself (both exactly: ``torch.lerp``).
    Trilinear and tetrahedral interpolation reproduce the identity exactly, so applying the result to a
    pixel in [0, 1] gives the blend of that pixel and its full-strength grade,
    ``pixel + strength * (graded - pixel)`` (nearest interpolation does not: its identity quantises).
    """
    check_lut(lut)
    check_strength(strength)
    identity = identity_lut(lut.shape[-2], dtype=lut.dtype, device=lut.device)
    if not isinstance(strength, torch.Tensor):
        return torch.lerp(identity, lut, float(strength))
    if strength.dim() > 1 or (strength.dim() == 1 and lut.dim() == 5 and strength.shape[0] != lut.shape[0]):
        raise ValueError(f"strength must be a number, or a () or (B,) tensor matching the {lut.dim()}-d lut "
                         f"{tuple(lut.shape)}, got shape {tuple(strength.shape)}")
    weight = strength.to(lut.device, lut.dtype)
    if weight.dim() == 1:
        weight = weight.view(-1, 1, 1, 1, 1)
    return torch.lerp(identity, lut, weight)


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


def _eager_under_compile(fn):
    """``fn`` that torch.compile runs as it is, between graphs, as ``torch.compiler.disable(fn)`` would,
    without importing ``torch._dynamo`` (2 s) in programs that never compile: once dynamo is loaded (which
    torch.compile does), every call goes through ``torch.compiler.disable(fn)``, so dynamo tracing the
    wrapper breaks the graph there and traces nothing of ``fn``."""

    disabled = {}  # fn -> torch.compiler.disable(fn), made once dynamo is loaded

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "torch._dynamo" not in sys.modules:
            return fn(*args, **kwargs)
        if fn not in disabled:
            disabled[fn] = torch.compiler.disable(fn)
        return disabled[fn](*args, **kwargs)

    return wrapper


# Under torch.compile the op runs as it is, between graphs: both backends are already fused by hand,
# and tracing into the torch fallback (chunk loops, worker threads) only hits the recompile limit.
@_eager_under_compile
def apply_lut(
    image: torch.Tensor,
    lut: torch.Tensor,
    *,
    interpolation: str = "trilinear",
    backend: str | None = None,
    out: torch.Tensor | None = None,
    strength=None,
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
    strength: None (full strength), a number in [0, 1] or a ``(B,)`` tensor (one per image): the LUT is
        first blended with the identity (:func:`lut_at_strength`), so each pixel in [0, 1] becomes
        ``pixel + strength * (graded - pixel)`` (trilinear, tetrahedral); differentiable w.r.t. it too.
    Returns the graded image, same shape and dtype as ``image`` (empty when H, W or B is 0; ``out``
    itself when given).
    """
    _check_inputs(image, lut, interpolation)
    if strength is not None:
        if isinstance(strength, torch.Tensor) and strength.dim() == 1 and strength.shape[0] != (
                image.shape[0] if image.dim() == 4 else -1):
            raise ValueError(f"strength {tuple(strength.shape)} needs one value per image of the batch "
                             f"{tuple(image.shape)}")
        lut = lut_at_strength(lut, strength)
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
