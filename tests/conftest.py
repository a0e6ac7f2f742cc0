"""Test set-up. Triton kernels run on CPU tensors in Triton's interpreter: TRITON_INTERPRET is read
when ``@triton.jit`` decorates, so it is set here, before any kernel module is imported. Only tests that
ask for ``backend="triton"`` run it: the automatic backend on CPU tensors stays the torch backend (its
compiled loop), the code CPU users get (see ``lutkern._backend``)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402  (after TRITON_INTERPRET, which must be set before any kernel import)
import torch  # noqa: E402
from PIL import Image  # noqa: E402

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
    _fail_missing_oracle(outcome.get_result())


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


@pytest.fixture(params=["torch-free", "torch"])
def grading_path(request, monkeypatch):
    """Runs a test of ``python -m lutkern.apply`` on each of its paths: without torch where it can (the
    default: :func:`lutkern.grading.codes_table`), and always through torch (``LUTKERN_TORCH_FREE=0``).
    Returns ``(name, tables)``: ``tables`` collects what ``codes_table`` gave each run of the command (a
    numpy table on the torch-free path, None where torch is needed)."""
    import lutkern.apply

    monkeypatch.setenv("LUTKERN_TORCH_FREE", "1" if request.param == "torch-free" else "0")
    tables = []
    real = lutkern.apply.codes_table

    def spy(*args, **kwargs):
        tables.append(real(*args, **kwargs))
        return tables[-1]

    monkeypatch.setattr(lutkern.apply, "codes_table", spy)
    return request.param, tables


@pytest.fixture
def command_modules():
    """``run(args)``: the modules that ``python -m lutkern.apply ARGS`` loaded, run in a fresh interpreter
    (this tree first on the path, the command's default path: LUTKERN_TORCH_FREE unset); its exit status
    must be 0."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("LUTKERN_TORCH_FREE", None)

    def run(args: list[str]) -> set[str]:
        probe = ("import json, runpy, sys\n"
                 f"sys.argv = ['lutkern.apply', *{args!r}]\n"
                 "try:\n    runpy.run_module('lutkern.apply', run_name='__main__')\n"
                 "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
                 "print(json.dumps(sorted(sys.modules)))")
        done = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True,
                              env=env, timeout=120)
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
