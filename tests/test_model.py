"""ResNetLUTGenerator: the seed's architecture, parameter for parameter, and the LUT it emits."""

import pytest
import torch

import lutkern
from img2lut.model import ResNetLUTGenerator

# The seed notebook's torchinfo table for lut_size=8 and 32x3x256x256 input: (layer type, output
# shape without the batch, parameters), in execution order. Copied from the notebook, not from the code.
SEED_TABLE = [
    ("Conv2d", (32, 256, 256), 896),
    ("BatchNorm2d", (32, 256, 256), 64),
    ("Conv2d", (64, 128, 128), 18_496),
    ("BatchNorm2d", (64, 128, 128), 128),
    ("Conv2d", (64, 128, 128), 36_928),
    ("BatchNorm2d", (64, 128, 128), 128),
    ("Conv2d", (64, 128, 128), 2_112),
    ("BatchNorm2d", (64, 128, 128), 128),
    ("Conv2d", (128, 64, 64), 73_856),
    ("BatchNorm2d", (128, 64, 64), 256),
    ("Conv2d", (128, 64, 64), 147_584),
    ("BatchNorm2d", (128, 64, 64), 256),
    ("Conv2d", (128, 64, 64), 8_320),
    ("BatchNorm2d", (128, 64, 64), 256),
    ("Conv2d", (256, 32, 32), 295_168),
    ("BatchNorm2d", (256, 32, 32), 512),
    ("Conv2d", (256, 32, 32), 590_080),
    ("BatchNorm2d", (256, 32, 32), 512),
    ("Conv2d", (256, 32, 32), 33_024),
    ("BatchNorm2d", (256, 32, 32), 512),
    ("Linear", (512,), 131_584),
    ("Linear", (1536,), 787_968),
]


def _layers_in_call_order(model, x):
    """(type, output shape without batch, own parameter count) for each Conv/BN/Linear as called."""
    seen = []

    def record(mod, inp, out):
        own = sum(p.numel() for p in mod.parameters(recurse=False))
        seen.append((type(mod).__name__, tuple(out.shape[1:]), own))

    hooks = [
        m.register_forward_hook(record)
        for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear))
    ]
    try:
        with torch.no_grad():
            model.predict_lut(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_seed_parameter_counts_per_layer():
    model = ResNetLUTGenerator(lut_size=8).eval()
    # The parameter counts do not depend on the input size; 256x256 keeps the seed's output shapes.
    layers = _layers_in_call_order(model, torch.rand(1, 3, 256, 256))
    # The shortcut (projection) runs after conv2/bn2 in the seed's forward and in torchinfo's table.
    assert layers == SEED_TABLE
    assert sum(p.numel() for p in model.parameters()) == sum(n for _, _, n in SEED_TABLE)


def test_output_shapes_and_lut_range():
    model = ResNetLUTGenerator(lut_size=5, init="default").eval()
    thumb, full = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 40, 48)
    out, lut = model(thumb, full=full)
    assert out.shape == (2, 3, 40, 48) and lut.shape == (2, 5, 5, 5, 3)
    assert lut.min() > 0 and lut.max() < 1
    # The output is the predicted LUT applied to `full` (not to the thumbnail), image by image.
    torch.testing.assert_close(out, lutkern.apply_lut(full, lut, backend="torch"))
    out_self, _ = model(thumb)
    assert out_self.shape == thumb.shape


@pytest.mark.parametrize("interpolation", ["trilinear", "nearest", "tetrahedral"])
def test_lut_gets_gradient_for_every_interpolation(interpolation):
    model = ResNetLUTGenerator(lut_size=4, interpolation=interpolation)
    out, _ = model(torch.rand(2, 3, 16, 16))
    out.square().mean().backward()
    assert model.lut_generator[-1].bias.grad.abs().sum() > 0


def test_identity_init_starts_at_the_identity_lut():
    torch.manual_seed(0)
    model = ResNetLUTGenerator(lut_size=9, init="identity").train()
    _, lut = model(torch.rand(4, 3, 32, 32))
    # 1e-3 clamp at the corners; the scaled-down weight adds a small image-dependent term.
    torch.testing.assert_close(lut, lutkern.identity_lut(9).expand(4, -1, -1, -1, -1), atol=0.01, rtol=0)


def test_lut_memory_order_is_the_cube_row_order():
    """The last Linear's outputs are read as lut[b, g, r, c]: output 3*(r + S*(g + S*b)) + c."""
    model = ResNetLUTGenerator(lut_size=3, init="default").eval()
    last = model.lut_generator[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[3 * (2 + 3 * (0 + 3 * 1)) + 0] = 10.0  # r=2, g=0, b=1, red channel
    _, lut = model(torch.rand(1, 3, 8, 8))
    assert lut[0, 1, 0, 2, 0] > 0.99
    assert (lut > 0.99).sum() == 1


@pytest.mark.parametrize("kwargs", [{"lut_size": 1}, {"interpolation": "cubic"}, {"init": "zeros"}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        ResNetLUTGenerator(**kwargs)
