"""What importing lutkern loads: nothing heavy before it is used (structural checks, not timings).

``import lutkern`` loads no torch at all; the public API loads torch but neither ``torch._dynamo`` (2 s,
what ``torch.compiler.disable`` imports), Triton, nor the compiled C loop (built or loaded on first call).
Each check runs in a fresh interpreter, so nothing another test imported counts.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lutkern

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch._dynamo", "torch._inductor", "triton")


def loaded_after(code: str) -> set[str]:
    """The modules loaded after running ``code`` in a fresh interpreter (this tree first on the path)."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("TRITON_INTERPRET", None)
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    return set(json.loads(run.stdout.splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] == "triton" or m.startswith(HEAVY))


def test_import_lutkern_loads_nothing_else():
    modules = loaded_after("import lutkern")
    assert not {m for m in modules if m.startswith("lutkern.")}, "import lutkern imported a submodule"
    assert "torch" not in modules and not heavy(modules)


def test_public_api_loads_no_dynamo_triton_or_c_loop():
    code = (
        "import lutkern\n"
        "names = [getattr(lutkern, n) for n in lutkern.__all__]\n"
        "from lutkern.ops import apply_lut_native, histogram_cpu\n"
        "assert apply_lut_native.library.cache_info().currsize == 0, 'C loop loaded at import'\n"
        "assert histogram_cpu._library.cache_info().currsize == 0, 'C loop loaded at import'\n"
    )
    modules = loaded_after(code)
    assert "torch" in modules  # the probe did import the API
    assert heavy(modules) == []


def test_calling_apply_lut_loads_no_dynamo():
    code = "import torch, lutkern\nlutkern.apply_lut(torch.rand(3, 4, 5), lutkern.identity_lut(3))"
    assert heavy(loaded_after(code)) == []


def test_every_public_name_resolves_and_unknown_names_raise():
    for name in lutkern.__all__:
        assert getattr(lutkern, name) is not None
        assert name in dir(lutkern)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lutkern.nope  # noqa: B018


def test_torch_compile_runs_apply_lut_as_is_between_graphs():
    """apply_lut stays outside the compiled graphs (as ``torch.compiler.disable`` makes it) without that
    decorator importing dynamo at import: the ops around it are compiled, the op itself is not traced."""
    from torch._dynamo.testing import CompileCounter

    lut = lutkern.looks["bw"](5)

    def fn(x):
        return lutkern.apply_lut((x * 0.5).clamp(0, 1), lut, interpolation="tetrahedral") + 1

    counter = CompileCounter()
    compiled = torch.compile(fn, backend=counter)
    x = torch.rand(2, 3, 7, 9)
    torch.testing.assert_close(compiled(x), fn(x), rtol=0, atol=0)
    assert counter.frame_count >= 2  # one graph before the call and one after it
    assert counter.op_count <= 4  # mul, clamp, add: nothing of the LUT lookup was traced
