"""Plain-torch LUT regularizers: literal transcriptions of the published code, the test oracles.

``lut`` is ``(B,D,D,D,3)`` indexed ``lut[n, b, g, r, c]`` (red index fastest, the ``.cube`` row order),
D >= 2. Every "mean" is over all elements including the batch, as ``Tensor.mean()`` on a batched tensor
does, so the value for a batch is the average of the per-LUT values.

The oracles copy the published code line by line in its own layout, channel first
``lut.permute(0, 4, 1, 2, 3) -> (B, 3, b, g, r)``:

- :func:`smoothness_reference`: ``smoothness_regularization`` of the seed notebook without its
  ``lambda_smooth`` factor. The notebook's ``diff_z`` line reads ``lut[:, :, :, :, 1:] - lut[:, :, :, :-1]``,
  whose second operand slices the wrong axis (it only broadcasts for D=2); the comment and the two
  other lines show the intent, the neighbour difference along the last axis, which is what is used here.
- :func:`total_variation_reference`, :func:`monotonicity_reference`: ``TV_3D.forward`` of
  Zeng et al., "Learning Image-adaptive 3D Lookup Tables for High Performance Photo Enhancement in
  Real-time" (TPAMI 2020), whose ``LUT`` is ``(3, b, g, r)`` (file line ``b*D*D + g*D + r``), i.e. our
  layout with the channel moved first; ``dif_r`` is along the red (last) axis.

The production fallback computes the same values fused: :mod:`lutkern.ops.regularizers_torch`.
"""

from __future__ import annotations

import torch


def smoothness_reference(lut: torch.Tensor) -> torch.Tensor:
    """The seed's smoothness term (no ``lambda_smooth``) of ``lut`` ``(B,D,D,D,3)``; scalar."""
    lut = lut.permute(0, 4, 1, 2, 3)
    diff_x = torch.abs(lut[:, :, 1:, :, :] - lut[:, :, :-1, :, :])
    diff_y = torch.abs(lut[:, :, :, 1:, :] - lut[:, :, :, :-1, :])
    diff_z = torch.abs(lut[:, :, :, :, 1:] - lut[:, :, :, :, :-1])
    local_var_x = torch.var(torch.stack([lut[:, :, :-1, :-1, :-1], lut[:, :, 1:, :-1, :-1]], dim=-1), dim=-1)
    local_var_y = torch.var(torch.stack([lut[:, :, :-1, :-1, :-1], lut[:, :, :-1, 1:, :-1]], dim=-1), dim=-1)
    local_var_z = torch.var(torch.stack([lut[:, :, :-1, :-1, :-1], lut[:, :, :-1, :-1, 1:]], dim=-1), dim=-1)
    return (
        diff_x.mean() + diff_y.mean() + diff_z.mean()
        + local_var_x.mean() + local_var_y.mean() + local_var_z.mean()
    )


def _tpami_differences(lut: torch.Tensor):
    """``dif_r, dif_g, dif_b`` of ``TV_3D.forward`` (``L[i] - L[i+1]``) and the matching TV weights."""
    lut = lut.permute(0, 4, 1, 2, 3)
    dim = lut.shape[-1]
    weight_r = torch.ones(3, dim, dim, dim - 1, dtype=lut.dtype, device=lut.device)
    weight_r[:, :, :, (0, dim - 2)] *= 2.0
    weight_g = torch.ones(3, dim, dim - 1, dim, dtype=lut.dtype, device=lut.device)
    weight_g[:, :, (0, dim - 2), :] *= 2.0
    weight_b = torch.ones(3, dim - 1, dim, dim, dtype=lut.dtype, device=lut.device)
    weight_b[:, (0, dim - 2), :, :] *= 2.0
    dif_r = lut[:, :, :, :, :-1] - lut[:, :, :, :, 1:]
    dif_g = lut[:, :, :, :-1, :] - lut[:, :, :, 1:, :]
    dif_b = lut[:, :, :-1, :, :] - lut[:, :, 1:, :, :]
    return (dif_r, dif_g, dif_b), (weight_r, weight_g, weight_b)


def total_variation_reference(lut: torch.Tensor) -> torch.Tensor:
    """TPAMI 3D-LUT total variation of ``lut`` ``(B,D,D,D,3)``; scalar."""
    (dif_r, dif_g, dif_b), (weight_r, weight_g, weight_b) = _tpami_differences(lut)
    return (
        torch.mean(torch.mul(dif_r**2, weight_r))
        + torch.mean(torch.mul(dif_g**2, weight_g))
        + torch.mean(torch.mul(dif_b**2, weight_b))
    )


def monotonicity_reference(lut: torch.Tensor) -> torch.Tensor:
    """TPAMI 3D-LUT monotonicity term of ``lut`` ``(B,D,D,D,3)``; scalar."""
    (dif_r, dif_g, dif_b), _ = _tpami_differences(lut)
    relu = torch.nn.functional.relu
    return torch.mean(relu(dif_r)) + torch.mean(relu(dif_g)) + torch.mean(relu(dif_b))
