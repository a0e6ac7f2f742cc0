"""python -m img2lut.predict on a video: cuts found from the frames, one LUT per shot (the mean of the
frames' predictions), the edit list, the graded video; and --per-frame, which flickers more."""

import csv
from fractions import Fraction

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from img2lut import checkpoint  # noqa: E402
from img2lut.model import ResNetLUTGenerator  # noqa: E402
from img2lut.predict import main  # noqa: E402
from img2lut.prediction import load  # noqa: E402
from img2lut.shots import ShotTracker, frame_histogram, histogram_distance  # noqa: E402
from lutkern import CubeLUT, read_cube  # noqa: E402
from lutkern.grading import grade_codes  # noqa: E402
from lutkern.video import read_frames  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_small_tensors")
W, H, RATE, PER_SHOT = 64, 48, Fraction(12), 8


def _frames(static_noise: bool) -> list[np.ndarray]:
    """Shot 1: a pan over warm gradients; shot 2: a different, cool and dark scene, static (with a little
    noise when ``static_noise``, as a camera's)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0 : 3 * W].astype(np.float64)
    warm = np.stack([0.6 + 0.4 * xx / (3 * W), 0.3 + 0.4 * yy / H, 0.1 + 0.1 * np.sin(xx / 9)], axis=-1)
    cool = np.stack([0.05 + 0.05 * yy / H, 0.1 + 0.1 * xx / (3 * W), 0.3 + 0.2 * np.cos(yy / 7)], axis=-1)
    frames = [warm[:, 4 * i : 4 * i + W] for i in range(PER_SHOT)]
    for _ in range(PER_SHOT):
        noise = rng.normal(0, 0.01, (H, W, 3)) if static_noise else 0
        frames.append(cool[:, :W] + noise)
    return [np.round(np.clip(f, 0, 1) * 255).astype(np.uint8) for f in frames]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    with av.open(str(root / "clip.mkv"), "w") as out:  # lossless RGB: the grading can be checked exactly
        stream = out.add_stream("ffv1", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = W, H, "bgr0"
        for i, codes in enumerate(_frames(static_noise=True)):
            frame = av.VideoFrame.from_ndarray(codes, format="rgb24").reformat(format="bgr0")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    torch.manual_seed(0)
    model = ResNetLUTGenerator(5, head="basis", basis_luts=4).eval()
    with torch.no_grad():  # bases and weights that make every frame's LUT its own
        model.basis.normal_(std=0.2)
        model.weight_generator[-1].weight.normal_(std=0.5)
    checkpoint.save_checkpoint(root / "model.pt", model=model, config={"image_size": 32, "cnn_size": 16})
    return root


def _run(setup, out, *extra):
    return main([str(setup / "model.pt"), str(setup / "clip.mkv"), "--out", str(setup / out), "--device",
                 "cpu", "--codec", "ffv1", *extra])


def test_a_lut_per_shot_the_edit_list_and_the_graded_video(setup):
    assert _run(setup, "shots") == 0
    out = setup / "shots"
    with (out / "clip.shots.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["first_frame"], r["last_frame"], r["cube"]) for r in rows] == [
        ("0", "7", "clip.shot001.cube"), ("8", "15", "clip.shot002.cube")]
    assert [float(r["start_seconds"]) for r in rows] == pytest.approx([0.0, 8 / 12], abs=1e-3)  # ms pts
    assert float(rows[1]["end_seconds"]) == pytest.approx(16 / 12, abs=1e-3)
    # Each shot's LUT: the mean of what the model predicts for its frames, computed here frame by frame.
    predictor = load(setup / "model.pt", "cpu")
    source = [f.codes for f in read_frames(setup / "clip.mkv")]
    luts = [predictor.predict_lut_codes(c, 8) for c in source]  # the LUT of each frame as a still
    cubes = [read_cube(out / r["cube"]) for r in rows]
    for k, cube in enumerate(cubes):
        mean = torch.stack(luts[PER_SHOT * k : PER_SHOT * (k + 1)]).mean(0)
        torch.testing.assert_close(cube.lut3d, mean, atol=1e-6, rtol=0)
    graded = [f.codes for f in read_frames(out / "clip.mkv")]
    assert len(graded) == len(source) == 2 * PER_SHOT
    for i, (g, s) in enumerate(zip(graded, source, strict=True)):  # lossless: exactly the shot's .cube
        np.testing.assert_array_equal(g, grade_codes(s.copy(), cubes[i // PER_SHOT]))


def test_per_frame_grades_each_frame_with_its_own_lut(setup):
    """--per-frame: frame i graded with the LUT predicted for frame i (no shot mean, no .cube rounding);
    those LUTs change from frame to frame, which is the flicker one LUT per shot removes."""
    assert _run(setup, "frames", "--per-frame") == 0
    predictor = load(setup / "model.pt", "cpu")
    source = [f.codes for f in read_frames(setup / "clip.mkv")]
    graded = [f.codes for f in read_frames(setup / "frames" / "clip.mkv")]
    luts = []
    for s, g in zip(source, graded, strict=True):
        lut = predictor.predict_lut_codes(s, 8)
        np.testing.assert_array_equal(g, grade_codes(s.copy(), CubeLUT(lut)))
        luts.append(lut)
    assert min(float((b - a).abs().max()) for a, b in zip(luts, luts[1:8], strict=False)) > 1e-4


def test_cuts_follow_the_scenes_not_the_motion():
    frames = [torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in _frames(static_noise=False)]
    pairs = zip(frames, frames[1:8], strict=False)
    within = max(histogram_distance(frame_histogram(a), frame_histogram(b)) for a, b in pairs)
    across = histogram_distance(frame_histogram(frames[7]), frame_histogram(frames[8]))
    assert within < 0.5 < across
    tracker = ShotTracker()
    starts = [tracker.add(f, torch.full((2, 2, 2, 3), float(i))) for i, f in enumerate(frames)]
    assert starts == [True] + [False] * 7 + [True] + [False] * 7
    first, second = tracker.shots
    torch.testing.assert_close(first.lut, torch.full((2, 2, 2, 3), 3.5))  # mean of 0..7
    assert first.flicker == pytest.approx(1.0) and second.flicker == pytest.approx(1.0)
