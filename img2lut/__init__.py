"""img2lut: learn 3D colour LUTs from (original, graded) image pairs.

``fit_lut`` fits one global LUT directly (:mod:`img2lut.fit`); :mod:`img2lut.train` trains the CNN that
predicts a LUT per image; ``load`` reads a trained one, ready to predict (:mod:`img2lut.predict`).
"""

__all__ = ["fit_lut", "FitResult"]
__all__ += ["load"]


def __getattr__(name: str):
    # Imported on first use: `python -m img2lut.fit` must not find img2lut.fit already imported.
    if name == "load":
        from .predict import load

        return load
    if name in __all__:
        from . import fit

        return getattr(fit, name)
    raise AttributeError(f"module 'img2lut' has no attribute {name!r}")
