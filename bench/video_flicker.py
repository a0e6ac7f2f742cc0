"""Flicker of ``python -m img2lut.predict`` on a video: one LUT per frame against one LUT per shot.

    python -m img2lut.train --demo adaptive                   # the model (about 2.5 minutes on 2 cores)
    python bench/video_flicker.py --model runs/models/demo-adaptive/model.pt --out runs/flicker

The clip is made here from two photographs that ship in the demo extra's wheels and that training never saw
(coffee, grace_hopper), each mis-shot as the adaptive demo's inputs are: shot 1 a slow pan and zoom over
one, shot 2 the other held still with sensor noise of 4 codes (a static scene: any change of its grade from
frame to frame is flicker), 640x360, 48 frames each at 24 fps, lossless (ffv1), so that the codec adds no
noise of its own. It is graded twice, ``--per-frame`` and with one LUT per shot (the default), and
measured within each shot:

- LUT change: the RMS change of the applied LUT from one frame to the next;
- frame change (static shot): the change of the graded frame's mean colour from one frame to the next,
  in 8-bit codes (the sensor noise averages out over a frame; a wobbling grade does not).

Writes ``flicker.png`` (the applied LUT's output for mid grey, frame by frame, both ways) and
``strip.jpg`` (frames of both shots, source above, graded below) into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402

from img2lut import grades  # noqa: E402
from img2lut.demo import load_photo  # noqa: E402
from img2lut.plots import loss_plot  # noqa: E402
from img2lut.predict import main as predict_main  # noqa: E402
from img2lut.prediction import load  # noqa: E402
from img2lut.shots import ShotTracker  # noqa: E402
from lutkern.video import read_frames  # noqa: E402

W, H, PER_SHOT, RATE = 640, 360, 48, 24


def _crop(photo: torch.Tensor, centre_x: float, centre_y: float, scale: float) -> np.ndarray:
    """A ``W x H`` view of ``photo`` ``(3,h,w)`` around a relative centre, ``scale`` of its height tall."""
    _, h, w = photo.shape
    ch = int(h * scale)
    cw = min(w, int(ch * W / H))
    x0 = int(np.clip(centre_x * w - cw / 2, 0, w - cw))
    y0 = int(np.clip(centre_y * h - ch / 2, 0, h - ch))
    view = photo[:, y0 : y0 + ch, x0 : x0 + cw].unsqueeze(0)
    view = torch.nn.functional.interpolate(view, size=(H, W), mode="bilinear", antialias=True)[0]
    return (view.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def make_clip(path: Path) -> None:
    gen = torch.Generator().manual_seed(5)
    first = grades.mis_shoot(load_photo("coffee"), gen)
    second = grades.mis_shoot(load_photo("grace_hopper"), gen)
    rng = np.random.default_rng(0)
    frames = [_crop(first, 0.35 + 0.3 * i / PER_SHOT, 0.5, 0.9 - 0.2 * i / PER_SHOT) for i in range(PER_SHOT)]
    still = _crop(second, 0.5, 0.5, 0.8).astype(np.float64)
    frames += [np.clip(still + rng.normal(0, 4.0, still.shape), 0, 255).round().astype(np.uint8)
               for _ in range(PER_SHOT)]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = W, H, "bgr0"
        for i, codes in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(codes, format="rgb24").reformat(format="bgr0")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _mid_grey(lut: torch.Tensor) -> float:
    """The LUT's output at the lattice point nearest mid grey, averaged over R, G, B."""
    m = lut.shape[0] // 2
    return float(lut[m, m, m].mean())


def frame_changes(path: Path) -> list[float]:
    """The change of each frame's mean colour (8-bit codes, mean over R, G, B) from the previous frame."""
    means = [f.codes.reshape(-1, 3).mean(0) for f in read_frames(path)]
    return [float(np.abs(b - a).mean()) for a, b in zip(means, means[1:], strict=False)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="model.pt of python -m img2lut.train")
    p.add_argument("--out", type=Path, default=Path("runs/flicker"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mkv"
        make_clip(clip)
        predictor = load(args.model, "cpu")
        tracker, grey = ShotTracker(), []
        for frame in read_frames(clip):
            thumb = predictor.thumbnail(frame.codes, 8)
            lut = predictor.predict_lut_codes(frame.codes, 8)
            tracker.add(thumb[0], lut)
            grey.append(_mid_grey(lut))
        changes = {}
        for name, extra in (("one LUT per frame", ["--per-frame"]), ("one LUT per shot", [])):
            folder = Path(tmp) / name.replace(" ", "_")
            assert predict_main([str(args.model), str(clip), "--out", str(folder), "--codec", "ffv1",
                                 "--device", "cpu", *extra]) == 0
            changes[name] = frame_changes(folder / "clip.mkv")
        source = [f.codes for f in read_frames(clip)]
        graded = [f.codes for f in read_frames(Path(tmp) / "one_LUT_per_shot" / "clip.mkv")]
    shots = tracker.shots
    print(f"{len(shots)} shots found: " + ", ".join(f"frames {s.first}-{s.last}" for s in shots))
    print("| shot | LUT change per frame, one LUT per frame (RMS) | one LUT per shot | "
          "frame change per frame, one LUT per frame (codes) | one LUT per shot |")
    print("|---|---:|---:|---:|---:|")
    for k, shot in enumerate(shots):
        span = slice(shot.first, shot.last)  # the changes from frame first+1 .. last
        per_frame, per_shot = (np.mean(changes[n][span]) for n in changes)
        print(f"| {k + 1} ({'pan' if k == 0 else 'static'}) | {shot.flicker:.4f} | 0 | {per_frame:.3f} | "
              f"{per_shot:.3f} |")
    per_shot = [_mid_grey(s.lut) for s in shots for _ in range(s.frames)]
    loss_plot(args.out / "flicker.png", list(range(len(grey))),
              {"one LUT per frame": grey, "one LUT per shot": per_shot}, log=False,
              title="the applied LUT's output for mid grey (mean of R, G, B), frame by frame",
              x_label=f"frame (cut at {PER_SHOT})")
    picks = [0, PER_SHOT // 2, PER_SHOT, PER_SHOT + PER_SHOT // 2]
    strip = np.concatenate([np.concatenate([source[i] for i in picks], axis=1),
                            np.concatenate([graded[i] for i in picks], axis=1)], axis=0)
    Image.fromarray(strip).resize((strip.shape[1] // 2, strip.shape[0] // 2)).save(args.out / "strip.jpg",
                                                                                   quality=88)
    print(f"wrote {args.out / 'flicker.png'} and {args.out / 'strip.jpg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
