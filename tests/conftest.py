"""Test set-up. Triton kernels run on CPU tensors in Triton's interpreter: TRITON_INTERPRET is read
when ``@triton.jit`` decorates, so it is set here, before any kernel module is imported. Only tests that
ask for ``backend="triton"`` run it: the automatic backend on CPU tensors stays the torch backend (its
compiled loop), the code CPU users get (see ``lutkern._backend``)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402  (after TRITON_INTERPRET, which must be set before any kernel import)
import torch  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture
def fast_small_tensors(monkeypatch):
    """The torch backend and one thread, for tests of the training machinery on tiny tensors (the
    kernels are tested on their own; tiny tensors gain nothing from a second thread)."""
    monkeypatch.setenv("LUTKERN_BACKEND", "torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
