"""Plain-torch oracles, for the tests only: readable, differentiable through autograd, slow. No production
code imports them."""

from .apply import apply_lut_reference
from .regularizers import monotonicity_reference, smoothness_reference, total_variation_reference

__all__ = ["apply_lut_reference"]
__all__ += ["smoothness_reference", "total_variation_reference", "monotonicity_reference"]
