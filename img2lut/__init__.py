"""img2lut: learn 3D colour LUTs from (original, graded) image pairs.

``fit_lut`` fits one global LUT directly (:mod:`img2lut.fitting`); ``python -m img2lut.train`` trains the
CNN that predicts a LUT per image (:mod:`img2lut.trainer`); ``load`` reads a trained one, ready to predict
(:mod:`img2lut.prediction`). The module layout: docs/architecture.md.
"""

from .fitting import FitResult, fit_lut
from .prediction import load

__all__ = ["fit_lut", "FitResult", "load"]
