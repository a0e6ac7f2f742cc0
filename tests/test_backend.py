"""Backend resolution: the ``backend=`` argument, then ``LUTKERN_BACKEND``, then the automatic choice
(Triton on CUDA, torch otherwise: the interpreter of ``TRITON_INTERPRET=1`` runs only when asked for).
An explicit Triton request that cannot run raises; the automatic choice falls back quietly and logs the
reason once."""

from __future__ import annotations

import logging

import pytest
import torch

import lutkern._backend as backend_mod
import lutkern.functional as functional
from lutkern import apply_lut, identity_lut
from lutkern._backend import resolve_backend

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def triton_present(monkeypatch):
    monkeypatch.setattr(backend_mod, "triton_import_error", lambda: None)


@pytest.fixture
def triton_missing(monkeypatch):
    monkeypatch.setattr(
        backend_mod, "triton_import_error", lambda: "ModuleNotFoundError: No module named 'triton'"
    )


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("LUTKERN_BACKEND", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    backend_mod._log_fallback_once.cache_clear()


def test_auto_picks_triton_on_cuda_and_torch_on_plain_cpu(triton_present):
    assert resolve_backend(None, CUDA) == "triton"
    assert resolve_backend(None, CPU) == "torch"


def test_auto_never_picks_the_interpreter(triton_present, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend(None, CPU) == "torch"
    assert resolve_backend("triton", CPU) == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert resolve_backend(None, CPU) == "torch"


def test_cpu_tensors_under_the_interpreter_run_what_cpu_users_get(monkeypatch):
    """The test suite sets TRITON_INTERPRET=1 for the kernel tests: CLI, model and training tests, which
    leave the backend automatic, must still run the torch backend's compiled loop and regularizers."""
    import lutkern.regularizers as regularizers_mod

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    calls = []

    def spy(name, real):
        def run(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)

        return run

    monkeypatch.setattr(functional, "apply_lut_cpu", spy("loop", functional.apply_lut_cpu))
    torch_terms = regularizers_mod.regularizer_terms_torch
    monkeypatch.setattr(regularizers_mod, "regularizer_terms_torch", spy("regularizers", torch_terms))
    lut = identity_lut(3)
    apply_lut(torch.rand(3, 4, 5), lut)
    regularizers_mod.smoothness(lut)
    want = ["loop", "regularizers"] if functional.native_available() else ["regularizers"]
    assert calls == want


def test_auto_falls_back_quietly_and_logs_the_reason_once(triton_missing, caplog):
    with caplog.at_level(logging.INFO, logger="lutkern"):
        assert resolve_backend(None, CUDA) == "torch"
        assert resolve_backend(None, CUDA) == "torch"
    messages = [r.getMessage() for r in caplog.records if r.name == "lutkern"]
    assert len(messages) == 1 and "No module named 'triton'" in messages[0]


def test_environment_overrides_auto(triton_present, monkeypatch):
    monkeypatch.setenv("LUTKERN_BACKEND", "torch")
    assert resolve_backend(None, CUDA) == "torch"
    monkeypatch.setenv("LUTKERN_BACKEND", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend(None, CPU) == "triton"


def test_argument_overrides_environment(triton_missing, monkeypatch):
    monkeypatch.setenv("LUTKERN_BACKEND", "triton")  # would raise if it were consulted
    assert resolve_backend("torch", CPU) == "torch"


def test_empty_environment_value_means_auto(triton_present, monkeypatch):
    monkeypatch.setenv("LUTKERN_BACKEND", "")
    assert resolve_backend(None, CUDA) == "triton"


@pytest.mark.parametrize("source", ["argument", "environment"])
def test_explicit_triton_that_cannot_run_raises(triton_missing, monkeypatch, source):
    if source == "environment":
        monkeypatch.setenv("LUTKERN_BACKEND", "triton")
    with pytest.raises(RuntimeError, match="No module named 'triton'") as info:
        resolve_backend("triton" if source == "argument" else None, CUDA)
    assert ("LUTKERN_BACKEND" in str(info.value)) == (source == "environment")


def test_explicit_triton_on_cpu_without_interpreter_raises(triton_present):
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        resolve_backend("triton", CPU)


def test_explicit_triton_on_unsupported_device_raises(triton_present):
    with pytest.raises(RuntimeError, match="meta"):
        resolve_backend("triton", torch.device("meta"))


@pytest.mark.parametrize("name", ["cuda", "Torch", "cpu", 1])
def test_bad_names_raise(name, monkeypatch):
    with pytest.raises(ValueError, match="backend argument"):
        resolve_backend(name, CPU)
    monkeypatch.setenv("LUTKERN_BACKEND", str(name))
    with pytest.raises(ValueError, match="LUTKERN_BACKEND"):
        resolve_backend(None, CPU)


def test_apply_lut_dispatches_to_the_resolved_backend(triton_missing, monkeypatch):
    calls = []

    def spy(image, lut, interpolation):
        calls.append((tuple(image.shape), tuple(lut.shape), interpolation))
        return image.clone()

    monkeypatch.setattr(functional, "apply_lut_torch", spy)
    monkeypatch.setenv("LUTKERN_NATIVE", "0")  # on CPU the torch backend would take its compiled loop
    image = torch.rand(3, 4, 5)
    out = apply_lut(image, identity_lut(3), interpolation="tetrahedral")
    # The backend receives validated, batched tensors; the unbatched shape is restored afterwards.
    assert calls == [((1, 3, 4, 5), (1, 3, 3, 3, 3), "tetrahedral")]
    assert out.shape == image.shape
    with pytest.raises(RuntimeError, match="triton"):
        apply_lut(image, identity_lut(3), backend="triton")


def test_auto_sends_inputs_triton_cannot_take_to_torch(triton_present, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend(None, CPU, unsupported="float64") == "torch"
    assert resolve_backend("triton", CPU, unsupported="float64") == "triton"  # the kernel raises itself


def test_float64_image_under_auto_runs_on_torch(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    image = torch.rand(1, 3, 4, 5, dtype=torch.float64)
    lut = identity_lut(3, dtype=torch.float64)
    torch.testing.assert_close(apply_lut(image, lut), image)
    with pytest.raises(TypeError, match="float64"):
        apply_lut(image, lut, backend="triton")
