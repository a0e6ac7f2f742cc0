"""Test set-up. Triton kernels run on CPU tensors in Triton's interpreter: TRITON_INTERPRET is read
when ``@triton.jit`` decorates, so it is set here, before any kernel module is imported. Only tests that
ask for ``backend="triton"`` run it: the automatic backend on CPU tensors stays the torch backend (its
compiled loop), the code CPU users get (see ``lutkern._backend``)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402  (after TRITON_INTERPRET, which must be set before any kernel import)
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from lutkern._backend import triton_import_error  # noqa: E402

# lutkern imports its kernels on first use: import them here, under the interpreter, so that a test that
# unsets TRITON_INTERPRET (tests/test_backend.py) cannot be the first to import one and leave it compiled
# for a GPU for the rest of the run.
if triton_import_error() is None:
    import lutkern.ops.apply_lut_triton  # noqa: E402, F401
    import lutkern.ops.histogram_triton  # noqa: E402, F401
    import lutkern.ops.regularizers_triton  # noqa: E402, F401

# Independent oracles: what a test compares lutkern with (the ffmpeg command, OpenColorIO, colour-science,
# OpenImageIO, PyAV, tifffile, ...). Where one is missing its tests skip, with one of these reasons; CI
# (.ci/run) installs them all and sets LUTKERN_REQUIRE_ORACLES=1, which turns such a skip into a failure,
# so no comparison silently stops running there. Skips for what a CPU machine lacks (CUDA, a compiler)
# stay skips.
ORACLE_SKIPS = ("could not import", "no ffmpeg binary", "without the resolve_cube fixtures")


def _missing_oracle(report) -> str | None:
    """The reason of a skip for a missing oracle when LUTKERN_REQUIRE_ORACLES=1, else None."""
    if not report.skipped or os.environ.get("LUTKERN_REQUIRE_ORACLES", "0") in ("", "0"):
        return None
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason if any(text in reason for text in ORACLE_SKIPS) else None


def _fail_missing_oracle(report) -> None:
    reason = _missing_oracle(report)
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = f"LUTKERN_REQUIRE_ORACLES=1 and an oracle is missing: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    _fail_missing_oracle(report)
    _fail_one_grading_path(item, report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield  # a module-level importorskip skips the whole module while it is collected
    _fail_missing_oracle(outcome.get_result())


@pytest.fixture(autouse=True)
def _pair_cache_in_tmp(tmp_path_factory, monkeypatch):
    """The commands' pair cache (img2lut.pair_cache) goes to a temporary folder, never the user's."""
    monkeypatch.setenv("IMG2LUT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "pair-cache"))


@pytest.fixture
def fast_small_tensors(monkeypatch):
    """The torch backend and one thread, for tests of the training machinery on tiny tensors (the
    kernels are tested on their own; tiny tensors gain nothing from a second thread)."""
    monkeypatch.setenv("LUTKERN_BACKEND", "torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The paths ``python -m lutkern.apply`` took in the running test, one per command run with a .cube file:
# "torch-free" (lutkern.grading.codes_table gave a numpy table) or "torch" (LUTKERN_TORCH_FREE=0 made it
# take torch). Both paths must pass the whole suite: a test that grades a .cube only on the torch-free path
# (the default) fails; it runs both through the grading_path fixture, or sets LUTKERN_TORCH_FREE itself.
_PATHS_TAKEN: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _record_grading_paths():
    import lutkern.apply

    real = lutkern.apply.codes_table

    def recording(tables, *args, **kwargs):
        table = real(tables, *args, **kwargs)
        if table is not None:
            _PATHS_TAKEN.append("torch-free")
        elif tables is not None and os.environ.get("LUTKERN_TORCH_FREE", "1").strip() == "0":
            _PATHS_TAKEN.append("torch")
        return table

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lutkern.apply, "codes_table", recording)
        yield


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _PATHS_TAKEN.clear()


def _fail_one_grading_path(item, report) -> None:
    """After a test that passed: fails it when it graded a .cube on the torch-free path alone, or when it
    asked for a path with ``grading_path`` and took the other one, or never took it."""
    if report.when == "call":
        item.grading_call_passed = report.passed
    if report.when != "teardown" or report.failed or not getattr(item, "grading_call_passed", False):
        return
    taken = set(_PATHS_TAKEN)
    wanted = getattr(item, "callspec", None) and item.callspec.params.get("grading_path")
    if wanted is None:
        problem = ("it graded a .cube on the torch-free path of python -m lutkern.apply only: run the torch "
                   "path too (the grading_path fixture, or LUTKERN_TORCH_FREE=0)"
                   if taken == {"torch-free"} else None)
    elif taken - {wanted}:
        problem = f"grading_path is {wanted!r}, and python -m lutkern.apply took {sorted(taken)}"
    elif wanted not in taken:
        problem = f"grading_path is {wanted!r}, and python -m lutkern.apply never took that path"
    else:
        problem = None
    if problem is not None:
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid}: {problem}"


@pytest.fixture(params=["torch-free", "torch"])
def grading_path(request, monkeypatch) -> str:
    """Runs a test of ``python -m lutkern.apply`` on each of its paths: without torch where it can (the
    default: :func:`lutkern.grading.codes_table`), and always through torch (``LUTKERN_TORCH_FREE=0``).
    Returns the path's name; the test fails unless the command took that path (and only that one)."""
    if request.param == "torch-free":
        from lutkern.ops.apply_lut_native import native_available

        if not native_available():
            pytest.skip("no C compiler: the torch-free path grades with the compiled loop")
    monkeypatch.setenv("LUTKERN_TORCH_FREE", "1" if request.param == "torch-free" else "0")
    return request.param


@pytest.fixture
def command_modules():
    """``run(args, **environ)``: the modules that ``python -m lutkern.apply ARGS`` loaded, run in a fresh
    interpreter (this tree first on the path, LUTKERN_TORCH_FREE unset: the command's default path, and
    ``environ`` added); its exit status must be 0."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("LUTKERN_TORCH_FREE", None)

    def run(args: list[str], **environ: str) -> set[str]:
        probe = ("import json, runpy, sys\n"
                 f"sys.argv = ['lutkern.apply', *{args!r}]\n"
                 "try:\n    runpy.run_module('lutkern.apply', run_name='__main__')\n"
                 "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
                 "print(json.dumps(sorted(sys.modules)))")
        done = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True,
                              env={**env, **environ}, timeout=120)
        assert done.returncode == 0, done.stderr
        return set(json.loads(done.stdout.splitlines()[-1]))

    return run


def _write_patch_pairs(root, names, lut, generator, *, inputs="inputs", targets="targets"):
    """Write 32x32 8-bit PNG pairs ``root/inputs/NAME.png`` (4x4 patches of random colours) and
    ``root/targets/NAME.png`` (the same graded by ``lut`` with the torch backend)."""
    import lutkern

    (root / inputs).mkdir(parents=True)
    (root / targets).mkdir()
    for name in names:
        blocks = torch.rand(3, 4, 4, generator=generator)
        img = (blocks.repeat_interleave(8, 1).repeat_interleave(8, 2) * 255).round() / 255
        graded = lutkern.apply_lut(img, lut, backend="torch")
        for folder, pixels in ((inputs, img), (targets, graded)):
            codes = (pixels * 255).round().permute(1, 2, 0).to(torch.uint8).numpy()
            Image.fromarray(codes, "RGB").save(root / folder / f"{name}.png")


@pytest.fixture(scope="session")
def write_patch_pairs():
    """The pair writer above, as a fixture (test modules do not import conftest)."""
    return _write_patch_pairs
