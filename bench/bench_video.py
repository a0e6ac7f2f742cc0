"""Grading a video: ``python -m lutkern.apply`` beside ``ffmpeg -vf lut3d`` on the same clip and LUT file,
with the same encoder settings.

    python bench/bench_video.py                          # 1280x720, 150 frames at 30 fps, with audio
    python bench/bench_video.py --size 1920 1080 --frames 120 --repeats 3

The clip is made here with PyAV: a pan over a synthetic image (ramps, a sine pattern, colour patches,
a little noise so the encoder has texture to code), H.264 8-bit 4:2:0, an AAC sine tone. The look is
written as a 33^3 ``.cube`` that both sides read. Both encode libx264 with the same CRF and preset, their
thread counts left at the automatic default on both sides (x264, the decoder; lutkern's torch threads and
ffmpeg's filter threads both use every core), and copy the audio. Both run as fresh processes, so a row's
time includes its start-up (Python and torch import for lutkern); ``lutkern (in-process)`` is the
transcode alone, as the command reports it. Printed as Markdown rows:
  frames/s    frames / wall time (best of --repeats; the rows take turns each round)
  CPU s       CPU time of that run, all threads summed (less sensitive to other processes on a shared
              machine than wall time)
  vs ffmpeg   this row's frames/s / ffmpeg's (> 1 is faster)
ffmpeg's row is skipped when there is no ``ffmpeg`` binary. The libx264 builds may differ (PyAV's wheel vs
the system's); the last line compares the two outputs' pixels on a few frames.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402

from lutkern import write_cube  # noqa: E402
from lutkern.builtin_looks import LOOKS  # noqa: E402
from lutkern.video import probe_video, read_frames  # noqa: E402

SAMPLE_RATE = 48000
PRESET = "medium"  # x264's default, which lutkern.apply encodes with


def make_clip(path: Path, width: int, height: int, frames: int, rate: int, seed: int = 0) -> None:
    """A pan, 4 pixels a frame, over a synthetic image twice the width; BT.709 limited range tags."""
    rng = np.random.default_rng(seed)
    big_w = 2 * width
    yy, xx = np.mgrid[0:height, 0:big_w].astype(np.float32)
    image = np.stack([xx / big_w, yy / height, 0.5 + 0.4 * np.sin(xx / 37 + yy / 23)], axis=-1)
    for _ in range(12):
        x, y = rng.integers(0, big_w - 200), rng.integers(0, height - 120)
        image[y : y + 120, x : x + 200] = rng.random(3)
    image += rng.normal(0, 0.02, image.shape).astype(np.float32)
    codes = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate, options={"crf": "16", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        cc = video.codec_context
        cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc = 1, 1, 1, 1
        audio = out.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "stereo"
        for i in range(frames):
            x = (4 * i) % (big_w - width)
            rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(codes[:, x : x + width]), format="rgb24")
            rgb.colorspace = 1
            frame = rgb.reformat(format="yuv420p", dst_color_range=1)
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        n = SAMPLE_RATE * frames // rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / SAMPLE_RATE)).astype(np.float32)
        for k in range(0, n, 1024):
            chunk = np.ascontiguousarray(np.stack([tone[k : k + 1024]] * 2))
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            af.sample_rate, af.pts = SAMPLE_RATE, k
            out.mux(audio.encode(af))
        out.mux(audio.encode(None))


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd``; its wall time, CPU time (user + system, all threads) and stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise SystemExit(f"failed ({run.returncode}): {' '.join(cmd)}\n{run.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), run.stderr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, nargs=2, default=(1280, 720), metavar=("W", "H"))
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--rate", type=int, default=30)
    p.add_argument("--look", default="teal_orange", choices=sorted(LOOKS))
    p.add_argument("--interpolation", default="trilinear", choices=("trilinear", "tetrahedral"))
    p.add_argument("--crf", type=int, default=18)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip, cube = folder / "clip.mp4", folder / "look.cube"
        make_clip(clip, *args.size, args.frames, args.rate)
        write_cube(cube, LOOKS[args.look](33), precision=9)
        info = probe_video(clip)
        ours_cmd = [sys.executable, "-m", "lutkern.apply", "--lut", str(cube), "--interpolation",
                    args.interpolation, "--crf", str(args.crf), "--device", "cpu", str(clip),
                    "--out", str(folder / "ours"), "--overwrite"]
        ffmpeg = shutil.which("ffmpeg")
        ref = folder / "ffmpeg.mp4"
        ffmpeg_cmd = [ffmpeg or "ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(clip), "-vf",
                      f"lut3d=file={cube}:interp={args.interpolation}", "-c:v", "libx264", "-crf",
                      str(args.crf), "-preset", PRESET, "-pix_fmt", "yuv420p", "-c:a", "copy", str(ref)]
        rows: dict[str, list[tuple[float, float]]] = {"lutkern.apply": [], "ffmpeg lut3d": []}
        inside = []
        for _ in range(args.repeats):
            wall, cpu, err = timed(ours_cmd)
            rows["lutkern.apply"].append((wall, cpu))
            inside.append(float(re.search(r"at ([0-9.]+) frames/s", err).group(1)))
            if ffmpeg:
                rows["ffmpeg lut3d"].append(timed(ffmpeg_cmd)[:2])

        print(f"{info.width}x{info.height}, {info.frames} frames at {info.rate} fps, H.264 yuv420p + AAC; "
              f"look {args.look} 33^3 {args.interpolation}; libx264 CRF {args.crf} preset {PRESET}; "
              f"{os.cpu_count()} CPUs; PyAV {av.__version__}")
        print("| | frames/s | CPU s | vs ffmpeg |\n|---|---|---|---|")
        base = args.frames / min(w for w, _ in rows["ffmpeg lut3d"]) if rows["ffmpeg lut3d"] else None
        for name, runs in rows.items():
            if not runs:
                print(f"| {name} | skipped (no ffmpeg binary) | | |")
                continue
            wall, cpu = min(runs)
            fps = args.frames / wall
            print(f"| {name} | {fps:.1f} | {cpu:.1f} | {f'{fps / base:.2f}' if base else ''} |")
        fps = max(inside)
        print(f"| lutkern (in-process) | {fps:.1f} | | {f'{fps / base:.2f}' if base else ''} |")
        if ffmpeg:
            pairs = zip(range(5), read_frames(folder / "ours" / clip.name), read_frames(ref), strict=False)
            diff = np.stack([np.abs(a.codes.astype(int) - b.codes.astype(int)) for _, a, b in pairs])
            print(f"first 5 frames, lutkern vs ffmpeg output: mean |diff| {diff.mean():.2f} codes, "
                  f"99th percentile {np.percentile(diff, 99):.0f} (two lossy encodes)")


if __name__ == "__main__":
    main()
