"""lutkern: fast, differentiable 3D colour look-up tables.

LUT convention everywhere: ``(D,D,D,3)`` or ``(B,D,D,D,3)`` indexed ``lut[..., b, g, r, c]``: the red
index varies fastest in memory, which is the ``.cube`` file row order.
"""

from .builtin_looks import LOOKS as looks
from .cube import CubeFormatError, CubeLUT, read_cube, write_cube
from .functional import (
    INTERPOLATIONS,
    MAX_LUT_SIZE,
    MIN_LUT_SIZE,
    apply_lut,
    identity_lut,
    lut_at_strength,
    resample_lut,
)
from .hald import read_hald, write_hald
from .histogram import channel_histogram
from .regularizers import lut_regularizers, monotonicity, smoothness, total_variation

__all__ = ["apply_lut", "identity_lut", "resample_lut", "INTERPOLATIONS", "MIN_LUT_SIZE", "MAX_LUT_SIZE"]
__all__ += ["lut_at_strength"]
__all__ += ["looks", "CubeFormatError", "CubeLUT", "read_cube", "write_cube", "read_hald", "write_hald"]
__all__ += ["smoothness", "total_variation", "monotonicity", "lut_regularizers", "channel_histogram"]
