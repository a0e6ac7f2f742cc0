"""Optional modules imported on first use, so that a command that does not need them does not wait for
them (PyAV takes ~0.1 s to import, which grading one JPEG does not need)."""

from __future__ import annotations

import importlib.util
import sys
import types


def optional_module(name: str) -> types.ModuleType | None:
    """The module ``name``, loaded on its first attribute access (the standard library's ``LazyLoader``),
    or None when it is not installed."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return None
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
