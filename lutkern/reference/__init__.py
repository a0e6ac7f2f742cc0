"""Plain-torch implementations: readable, differentiable through autograd, and the test oracle."""

from .apply import apply_lut_reference

__all__ = ["apply_lut_reference"]
