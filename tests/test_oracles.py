"""LUTKERN_REQUIRE_ORACLES=1 (set by .ci/run): a test skipped for a missing oracle fails instead, at
collection (a module-level importorskip) and at run time (a skipif); other skips stay skips."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

SUITE = '''
import shutil
import pytest

def test_needs_a_module():
    pytest.importorskip("no_such_oracle_module")

@pytest.mark.skipif(True, reason="no ffmpeg binary to compare with")
def test_needs_a_binary():
    pass

@pytest.mark.skipif(True, reason="needs a CUDA device")
def test_needs_a_gpu():
    pass

def test_runs():
    pass
'''


def _pytest(folder: Path, require: str | None, *files: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LUTKERN_REQUIRE_ORACLES", "PYTEST_ADDOPTS")}
    if require is not None:
        env["LUTKERN_REQUIRE_ORACLES"] = require
    # -rN: no short summary, whatever an ini file above the folder asks, so each message is printed once.
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rN", "-p", "no:cacheprovider", *files],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def test_missing_oracles_fail_only_when_required(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # the folder is its own root: no outside ini applies
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "test_module.py").write_text("import pytest\npytest.importorskip('no_such_oracle')\n"
                                              "def test_x():\n    pass\n")
    relaxed = _pytest(tmp_path, None)
    assert relaxed.returncode == 0, relaxed.stdout
    assert "1 passed, 4 skipped" in relaxed.stdout
    strict = _pytest(tmp_path, "1", "test_suite.py")
    assert strict.returncode == 1, strict.stdout
    assert "1 failed, 1 passed, 1 skipped, 1 error" in strict.stdout  # a skipif fails at set-up: an error
    assert strict.stdout.count("LUTKERN_REQUIRE_ORACLES=1 and an oracle is missing") == 2
    collected = _pytest(tmp_path, "1", "test_module.py")  # a collection error ends the run: status 2
    assert collected.returncode == 2 and "an oracle is missing: Skipped: could not import 'no_such_oracle'" \
        in collected.stdout
