"""The LUT-predicting CNN: a small ResNet that looks at a photo and emits one 3D LUT per image.

Backbone (the seed experiment's, parameter for parameter): 3x3 conv to 32 channels + BN + ReLU at the
input resolution; three residual blocks 32->64->128->256, each stride 2 with a 1x1 projection shortcut;
global average pooling to 256 features. Two heads turn the features into a LUT:

- ``"direct"`` (the seed's): Linear 256->512, ReLU, Linear 512->S^3*3, reshaped to ``(B,S,S,S,3)`` and
  squashed by a sigmoid into [0, 1]. With S=33 the last layer alone has 55 M weights. The module and
  parameter names match the seed's, so its state dicts load unchanged.
- ``"basis"`` (image-adaptive 3D LUTs, Zeng et al. 2020; AdaInt 2022): Linear 256->512, ReLU,
  Linear 512->K, tanh: K weights in [-1, 1] that blend K learned basis LUTs into a residual added to
  one shared LUT, ``lut = base + sum_k w_k basis_k``. The bases start at zero, so every image starts at
  ``base`` (the identity, or a fitted LUT: :meth:`ResNetLUTGenerator.start_at`), and the tanh bounds how
  far any photo, however unfamiliar, can move from it. ~1.3 M parameters for K=8, S=33.
- ``"curves"`` (separable 1D + 3D, after SepLUT, ECCV 2022): the basis head's 3D LUT preceded by one
  tone curve per channel and image (S points each, the identity plus a tanh-bounded offset, clamped to
  [0,1]): exposure, white balance and levels are per-channel curves, a look is 3D. The two are composed
  at the lattice, ``lut(v) = lut3d(curves(v))`` at every lattice point ``v``, so the model still emits
  one plain 3D LUT per image: what is trained is exactly what a ``.cube`` holds and a grading tool
  applies. The curves start at the identity, so every image starts at ``base`` here too.

The basis and curves heads also see what a grade is read from: :func:`img2lut.image_stats.image_stats`
of the full-size image (per-channel quantiles from full-resolution histograms, means, spreads, joint
colour statistics), concatenated to the pooled features. And both put a per-channel *levels* curve
``clamp((x - lo) / (hi - lo), 0, 1) ** gamma`` in front of the 3D LUT: its parameters start at the
``normalise`` correction read off the statistics (:data:`img2lut.image_stats.NORMALISERS`; ``"none"``:
the identity) and the head adds a tanh-bounded offset to each (zero at the start). Automatic grades are
mostly such curves read off a photo's tails and means; a learned 3D LUT then adds the look. The levels
curves are composed with the 3D LUT at the lattice, as the curves head's are.

LUTs follow the project convention ``lut[n, b, g, r, c]`` (red index fastest), the ``.cube`` row order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import lutkern

from .image_stats import NORMALISERS, STATS_DIM, image_stats, levels_curve

INITS = ("identity", "default")
HEADS = ("direct", "basis", "curves")
HISTOGRAM_BINS = 16
# A LUT behind a sigmoid starts at the logit of its values clamped to [eps, 1-eps] (0 and 1 have none).
LOGIT_EPS = 1e-3
# Identity initialisation shrinks the last weight so that every image starts from (almost) the start LUT.
IDENTITY_WEIGHT_SCALE = 0.01
# How far the head may move each levels parameter from the normaliser's: black and white points by
# +-LEVELS_SHIFT, gamma by a factor exp(+-LEVELS_LOG_GAMMA).
LEVELS_SHIFT = 0.25
LEVELS_LOG_GAMMA = 1.0
LEVELS_OUTPUTS = 9  # (lo, hi, log gamma) x (r, g, b)


def lut_logits(lut: torch.Tensor) -> torch.Tensor:
    """The logits whose sigmoid is ``lut`` clamped to [eps, 1-eps]: how a LUT parametrised behind a
    sigmoid (the direct head, ``fit_lut(parametrization="logits")``) starts at a given LUT."""
    return torch.logit(lut.clamp(LOGIT_EPS, 1 - LOGIT_EPS))


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


def colour_histogram(x: torch.Tensor, bins: int = HISTOGRAM_BINS) -> torch.Tensor:
    """``(B,3,bins)`` soft histogram of each channel of ``x`` ``(B,3,h,w)`` (values clamped to [0,1]): a
    cheap signature of a small image (video shot cuts compare them).

    Triangular bins centred at ``j/(bins-1)``: each value splits between its two nearest centres, so a
    channel's row sums to ``bins`` (scaled from 1 to be of the order of the pooled features).
    """
    centres = torch.linspace(0, 1, bins, device=x.device, dtype=torch.float32)
    v = x.float().clamp(0, 1).flatten(2).unsqueeze(-1)  # (B,3,P,1)
    weights = (1 - (v - centres).abs() * (bins - 1)).clamp(min=0)  # (B,3,P,bins)
    return weights.mean(2) * bins


class ResNetLUTGenerator(nn.Module):
    """Predict a ``(B,S,S,S,3)`` LUT from images ``(B,3,H,W)`` in [0,1] and apply it.

    lut_size: S, the LUT lattice size (2..256; 33 is the usual grading size).
    interpolation: how the LUT is applied, any mode of :func:`lutkern.apply_lut`.
    init: where every prediction starts. Direct head: ``"identity"`` (last bias = logit of the identity
        clamped to [eps, 1-eps], last weight scaled down) or ``"default"`` (PyTorch's initialisation, as
        the seed did). Basis head: the shared LUT starts at the identity (``"identity"``) or at 0.5
        everywhere (``"default"``, what the direct head's default starts near).
    head: ``"direct"`` or ``"basis"`` (see the module docstring).
    basis_luts: K, the number of basis LUTs of the basis head.
    normalise: the correction of :data:`img2lut.image_stats.NORMALISERS` the basis and curves heads'
        levels curves start at (``"none"``: the identity).
    """

    def __init__(self, lut_size: int = 33, interpolation: str = "trilinear", init: str = "default",
                 head: str = "direct", basis_luts: int = 8, normalise: str = "none"):
        super().__init__()
        if not isinstance(lut_size, int) or not lutkern.MIN_LUT_SIZE <= lut_size <= lutkern.MAX_LUT_SIZE:
            raise ValueError(f"lut_size must be an int in [{lutkern.MIN_LUT_SIZE}, {lutkern.MAX_LUT_SIZE}], "
                             f"got {lut_size!r}")
        if interpolation not in lutkern.INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {lutkern.INTERPOLATIONS}, got {interpolation!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if not isinstance(basis_luts, int) or isinstance(basis_luts, bool) or not 1 <= basis_luts <= 256:
            raise ValueError(f"basis_luts must be an int in [1, 256], got {basis_luts!r}")
        if normalise not in NORMALISERS:
            raise ValueError(f"normalise must be one of {tuple(NORMALISERS)}, got {normalise!r}")
        self.lut_size = lut_size
        self.interpolation = interpolation
        self.init = init
        self.head = head
        self.basis_luts = basis_luts
        self.normalise = normalise
        self.backend: str | None = None  # lutkern.apply_lut's backend: a setting of the run, not saved
        self.initial_conv = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=3, stride=1, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
        )
        self.layer1 = ResidualBlock(32, 64, stride=2)
        self.layer2 = ResidualBlock(64, 128, stride=2)
        self.layer3 = ResidualBlock(128, 256, stride=2)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        shape = (lut_size,) * 3 + (3,)
        start = lutkern.identity_lut(lut_size) if init == "identity" else torch.full(shape, 0.5)
        if head == "direct":
            self.lut_generator = nn.Sequential(nn.Linear(256, 512), nn.ReLU(),
                                               nn.Linear(512, lut_size**3 * 3))
            if init == "identity":
                with torch.no_grad():
                    self.lut_generator[-1].weight.mul_(IDENTITY_WEIGHT_SCALE)
                self.start_at(start)
        else:
            outputs = basis_luts + LEVELS_OUTPUTS + (3 * lut_size if head == "curves" else 0)
            self.weight_generator = nn.Sequential(nn.Linear(256 + STATS_DIM, 512), nn.ReLU(),
                                                  nn.Linear(512, outputs))
            with torch.no_grad():  # levels and curve offsets start at 0: every image starts at `normalise`
                self.weight_generator[-1].weight[basis_luts:].zero_()
                self.weight_generator[-1].bias[basis_luts:].zero_()
            # Flat (S^3*3,) and (K, S^3*3), in .cube row order: no memory-format change applies to them.
            self.base_lut = nn.Parameter(start.reshape(-1))
            self.basis = nn.Parameter(torch.zeros(basis_luts, lut_size**3 * 3))

    def config(self) -> dict:
        """The constructor arguments: enough to rebuild this architecture (saved in checkpoints)."""
        return {"lut_size": self.lut_size, "interpolation": self.interpolation, "init": self.init,
                "head": self.head, "basis_luts": self.basis_luts, "normalise": self.normalise}

    def shared_lut(self) -> nn.Parameter:
        """The parameter ``(S^3*3,)`` that holds the LUT every image shares, in ``.cube`` row order: the
        direct head's last bias (the LUT's logits), the basis head's ``base_lut`` (its values)."""
        return self.lut_generator[-1].bias if self.head == "direct" else self.base_lut

    @torch.no_grad()
    def start_at(self, lut: torch.Tensor) -> None:
        """Make ``lut`` ``(S,S,S,3)`` the shared LUT that every image starts from (a warm start).

        Direct head: the last bias becomes the logit of ``lut`` clamped to [eps, 1-eps]; only with
        ``init="identity"`` (last weight scaled down) do images then start at ``lut``. Basis head: the
        shared LUT becomes ``lut`` and the bases stay as they are (zero when new).
        """
        if tuple(lut.shape) != (self.lut_size,) * 3 + (3,):
            raise ValueError(f"the start LUT must be {(self.lut_size,) * 3 + (3,)}, got {tuple(lut.shape)}")
        shared = self.shared_lut()
        if self.head == "direct":
            if self.init != "identity":
                raise ValueError("a warm start of the direct head needs init='identity' (the last weight "
                                 "scaled down)")
            lut = lut_logits(lut)
        shared.copy_(lut.reshape(-1).to(shared))

    def features(self, x: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
        """``(B,256)`` globally pooled features of images ``x`` ``(B,3,h,w)``, followed for the basis and
        curves heads by the ``(B,STATS_DIM)`` statistics ``stats`` of the full-size images
        (:func:`img2lut.image_stats.image_stats`; None: those of ``x``), centred as ``2 * stats - 1``."""
        pooled = self.global_pool(self.layer3(self.layer2(self.layer1(self.initial_conv(x))))).flatten(1)
        if self.head == "direct":
            return pooled
        if stats is None:
            stats = image_stats(x)
        return torch.cat([pooled, (2 * stats.to(pooled) - 1)], dim=1)

    def levels(self, stats: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(lo, hi, gamma)`` ``(B,3)`` of each image's levels curves: the ``normalise`` correction of its
        ``stats`` moved by the head's tanh-bounded ``offsets`` ``(B,9)``."""
        lo, hi, gamma = (p.to(offsets) for p in NORMALISERS[self.normalise](stats.to(offsets.device)))
        d = offsets.view(-1, 3, 3)
        return (lo + LEVELS_SHIFT * d[:, 0], hi + LEVELS_SHIFT * d[:, 1],
                gamma * torch.exp(LEVELS_LOG_GAMMA * d[:, 2]))

    def predict_lut(self, x: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
        """LUTs ``(B,S,S,S,3)``, ``lut[n, b, g, r, c]``, for images ``x`` ``(B,3,H,W)`` whose full-size
        images have the statistics ``stats`` ``(B,STATS_DIM)`` (None: those of ``x``; the direct head
        ignores them): in (0,1) for the direct head; the basis and curves heads' are not clamped
        (values outside [0,1] are applied as they are)."""
        if self.head != "direct" and stats is None:
            stats = image_stats(x)
        features = self.features(x, stats)
        s = self.lut_size
        if self.head == "direct":
            return torch.sigmoid(self.lut_generator(features).view(-1, s, s, s, 3))
        outputs = torch.tanh(self.weight_generator(features))  # (B, K + 9 [+ 3S])
        k = self.basis_luts
        weights = outputs[:, :k]
        lut = (self.base_lut.to(weights.dtype) + weights @ self.basis.to(weights.dtype)).view(-1, s, s, s, 3)
        knots = torch.linspace(0, 1, s, dtype=lut.dtype, device=lut.device).expand(len(lut), 3, s)
        curves = levels_curve(knots, *self.levels(stats, outputs[:, k:k + LEVELS_OUTPUTS]))  # (B,3,S)
        if self.head == "curves":
            curves = (curves + outputs[:, k + LEVELS_OUTPUTS:].view(-1, 3, s)).clamp(0, 1)
        # The lattice as an image (B,3,S^3) in .cube order (red fastest), each point through its curves.
        n = curves.shape[0]
        lattice = torch.stack([
            curves[:, 0].view(n, 1, 1, s).expand(n, s, s, s),
            curves[:, 1].view(n, 1, s, 1).expand(n, s, s, s),
            curves[:, 2].view(n, s, 1, 1).expand(n, s, s, s),
        ], dim=1).reshape(n, 3, 1, s**3)
        composed = lutkern.apply_lut(lattice, lut, interpolation=self.interpolation, backend=self.backend)
        return composed.view(n, 3, s**3).transpose(1, 2).reshape(n, s, s, s, 3)

    def forward(self, x: torch.Tensor, full: torch.Tensor | None = None,
                stats: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(transformed, lut)``.

        x: ``(B,3,h,w)`` what the CNN sees (often a thumbnail of ``full``).
        full: ``(B,3,H,W)`` the images the predicted LUTs are applied to; ``x`` itself when None.
        stats: ``(B,STATS_DIM)`` the statistics the head reads; None: those of ``full`` (else ``x``).
        transformed: ``(B,3,H,W)`` = ``apply_lut(full, lut)``; lut: ``(B,S,S,S,3)``.
        """
        target = x if full is None else full
        if stats is None and self.head != "direct":
            stats = image_stats(target)
        lut = self.predict_lut(x, stats)
        return lutkern.apply_lut(target, lut, interpolation=self.interpolation, backend=self.backend), lut
