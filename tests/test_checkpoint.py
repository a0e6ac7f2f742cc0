"""Checkpoint files: atomic writes with ordinary permissions; one-line errors for files not ours."""

import os
import stat

import pytest
import torch

from img2lut import checkpoint
from img2lut.model import ResNetLUTGenerator


class _Payload:
    """Stands for arbitrary code in a pickle: weights_only loading must refuse it."""


def test_round_trip_and_permissions(tmp_path):
    model = ResNetLUTGenerator(lut_size=3)
    old = os.umask(0o022)
    try:
        checkpoint.save_checkpoint(tmp_path / "c.pt", model=model, config={"lr": 1e-3})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c.pt").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind
    loaded = checkpoint.model_from_checkpoint(checkpoint.load_checkpoint(tmp_path / "c.pt"))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)


@pytest.mark.parametrize("content", ["garbage", "pickle", "foreign"])
def test_unusable_files_give_one_line_errors(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif content == "pickle":
        torch.save({"x": _Payload()}, path)
    else:
        torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(checkpoint.CheckpointError) as info:
        checkpoint.load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
