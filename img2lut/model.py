"""The LUT-predicting CNN: a small ResNet that looks at a photo and emits one 3D LUT per image.

Architecture (the seed experiment's, parameter for parameter): 3x3 conv to 32 channels + BN + ReLU at
the input resolution; three residual blocks 32->64->128->256, each stride 2 with a 1x1 projection
shortcut; global average pooling; Linear 256->512, ReLU, Linear 512->S^3*3; reshaped to ``(B,S,S,S,3)``
and squashed by a sigmoid into [0, 1]. The LUT follows the project convention ``lut[n, b, g, r, c]``
(red index fastest), so the last Linear's outputs are in ``.cube`` row order.

The module and parameter names match the seed's, so its state dicts load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import lutkern

INITS = ("identity", "default")
# Identity initialisation clamps the identity LUT to [eps, 1-eps] before the logit (0 and 1 have none)
# and shrinks the last weight so that every image starts from (almost) the identity LUT.
IDENTITY_EPS = 1e-3
IDENTITY_WEIGHT_SCALE = 0.01


class ResidualBlock(nn.Module):
    """Two 3x3 conv + BN layers with a (projected when the shape changes) shortcut, ReLU after the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetLUTGenerator(nn.Module):
    """Predict a ``(B,S,S,S,3)`` LUT from images ``(B,3,H,W)`` in [0,1] and apply it.

    lut_size: S, the LUT lattice size (2..256; 33 is the usual grading size).
    interpolation: how the LUT is applied, any mode of :func:`lutkern.apply_lut`.
    init: ``"identity"`` starts every prediction at the identity LUT (last bias = logit of the identity
        clamped to [eps, 1-eps], last weight scaled down); ``"default"`` keeps PyTorch's initialisation,
        as the seed did. See docs/training.md for the measurement behind the default.
    """

    def __init__(self, lut_size: int = 33, interpolation: str = "trilinear", init: str = "default"):
        super().__init__()
        if not isinstance(lut_size, int) or not lutkern.functional.MIN_LUT_SIZE <= lut_size <= 256:
            raise ValueError(f"lut_size must be an int in [2, 256], got {lut_size!r}")
        if interpolation not in lutkern.reference.apply.INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {lutkern.reference.apply.INTERPOLATIONS}, "
                             f"got {interpolation!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.lut_size = lut_size
        self.interpolation = interpolation
        self.init = init
        self.initial_conv = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=3, stride=1, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
        )
        self.layer1 = ResidualBlock(32, 64, stride=2)
        self.layer2 = ResidualBlock(64, 128, stride=2)
        self.layer3 = ResidualBlock(128, 256, stride=2)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.lut_generator = nn.Sequential(
            nn.Linear(256, 512),
            nn.ReLU(),
            nn.Linear(512, lut_size**3 * 3),
        )
        if init == "identity":
            self._init_identity()

    @torch.no_grad()
    def _init_identity(self) -> None:
        last = self.lut_generator[-1]
        target = lutkern.identity_lut(self.lut_size).clamp(IDENTITY_EPS, 1 - IDENTITY_EPS)
        last.bias.copy_(torch.logit(target).reshape(-1))
        last.weight.mul_(IDENTITY_WEIGHT_SCALE)

    def config(self) -> dict:
        """The constructor arguments: enough to rebuild this architecture (saved in checkpoints)."""
        return {"lut_size": self.lut_size, "interpolation": self.interpolation, "init": self.init}

    def predict_lut(self, x: torch.Tensor) -> torch.Tensor:
        """LUTs ``(B,S,S,S,3)`` in (0,1), ``lut[n, b, g, r, c]``, for images ``x`` ``(B,3,H,W)``."""
        x = self.initial_conv(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        features = self.global_pool(x).flatten(1)
        s = self.lut_size
        return torch.sigmoid(self.lut_generator(features).view(-1, s, s, s, 3))

    def forward(self, x: torch.Tensor, full: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(transformed, lut)``.

        x: ``(B,3,h,w)`` what the CNN sees (often a thumbnail of ``full``).
        full: ``(B,3,H,W)`` the images the predicted LUTs are applied to; ``x`` itself when None.
        transformed: ``(B,3,H,W)`` = ``apply_lut(full, lut)``; lut: ``(B,S,S,S,3)``.
        """
        lut = self.predict_lut(x)
        target = x if full is None else full
        return lutkern.apply_lut(target, lut, interpolation=self.interpolation), lut
