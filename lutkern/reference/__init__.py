"""Plain-torch implementations: readable, differentiable through autograd, and the test oracle."""

from .apply import apply_lut_reference
from .regularizers import (
    monotonicity_reference,
    regularizer_terms_torch,
    smoothness_reference,
    total_variation_reference,
)

__all__ = ["apply_lut_reference"]
__all__ += ["smoothness_reference", "total_variation_reference", "monotonicity_reference"]
__all__ += ["regularizer_terms_torch"]
