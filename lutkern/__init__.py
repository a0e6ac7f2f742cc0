"""lutkern: fast, differentiable 3D colour look-up tables.

LUT convention everywhere: ``(D,D,D,3)`` or ``(B,D,D,D,3)`` indexed ``lut[..., b, g, r, c]``: the red
index varies fastest in memory, which is the ``.cube`` file row order.

The public names are imported on first use (module ``__getattr__``): ``import lutkern`` loads nothing
else, so a command that needs neither torch nor Triton (``python -m lutkern.apply`` on the CPU, see
:mod:`lutkern.apply`) starts without them.
"""

import importlib

# Public name -> (module, name in it).
_EXPORTS = {
    "apply_lut": ("functional", "apply_lut"),
    "identity_lut": ("functional", "identity_lut"),
    "resample_lut": ("functional", "resample_lut"),
    "lut_at_strength": ("functional", "lut_at_strength"),
    "INTERPOLATIONS": ("functional", "INTERPOLATIONS"),
    "MIN_LUT_SIZE": ("functional", "MIN_LUT_SIZE"),
    "MAX_LUT_SIZE": ("functional", "MAX_LUT_SIZE"),
    "looks": ("builtin_looks", "LOOKS"),
    "CubeFormatError": ("cube", "CubeFormatError"),
    "CubeLUT": ("cube", "CubeLUT"),
    "read_cube": ("cube", "read_cube"),
    "write_cube": ("cube", "write_cube"),
    "read_lut": ("formats", "read_lut"),
    "write_lut": ("formats", "write_lut"),
    "LUTChain": ("formats", "LUTChain"),
    "LUTFormatError": ("formats", "LUTFormatError"),
    "read_hald": ("hald", "read_hald"),
    "write_hald": ("hald", "write_hald"),
    "smoothness": ("regularizers", "smoothness"),
    "total_variation": ("regularizers", "total_variation"),
    "monotonicity": ("regularizers", "monotonicity"),
    "lut_regularizers": ("regularizers", "lut_regularizers"),
    "channel_histogram": ("histogram", "channel_histogram"),
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lutkern' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
