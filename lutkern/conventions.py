"""What every module shares about LUTs, importable without torch (for the commands that run without it).

The memory convention is in :mod:`lutkern`'s docstring: ``lut[..., b, g, r, c]``, red index fastest.
"""

INTERPOLATIONS = ("trilinear", "tetrahedral", "nearest")  # the modes of apply_lut
MIN_LUT_SIZE, MAX_LUT_SIZE = 2, 256  # the lattice sizes D a (D,D,D,3) LUT may have
LOOK_NAMES = ("bw", "teal_orange", "faded_warm", "cool_contrast")  # lutkern.looks (builtin_looks.py)
