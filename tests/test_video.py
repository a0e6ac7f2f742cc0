"""Videos through ``python -m lutkern.apply`` and :mod:`lutkern.video`: what is kept (size, frame count,
timestamps, rate, colour tags, bit depth, audio packets), lossless grading equal to ``grade_codes``,
FFmpeg's lut3d filter as an independent reference, per-file errors, no partial output.

The test videos are made here with PyAV: 64x48, 12 frames, a pan over a synthetic image (a ramp, a sine
pattern and colour patches), audio a sine tone."""

import os
import shutil
import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

import lutkern.grading  # noqa: E402  (after the importorskip: no video tests without PyAV)
import lutkern.video  # noqa: E402
from lutkern import write_cube  # noqa: E402
from lutkern.apply import main  # noqa: E402
from lutkern.builtin_looks import LOOKS  # noqa: E402
from lutkern.files import TEMP_SUFFIX  # noqa: E402
from lutkern.grading import grade_codes, load_lut  # noqa: E402
from lutkern.video import probe_video, read_frames  # noqa: E402

W, H, FRAMES, RATE = 64, 48, 12, Fraction(24)
SAMPLE_RATE = 48000


def _scene(index: int, depth: int) -> np.ndarray:
    """Frame ``index`` ``(H,W,3)`` of a pan, 4 pixels a frame, over a 3W-wide image; uint8 or uint16."""
    yy, xx = np.mgrid[0:H, index * 4 : index * 4 + W].astype(np.float64)
    rgb = np.stack([xx / (3 * W - 1), yy / (H - 1), 0.5 + 0.4 * np.sin(xx / 7 + yy / 5)], axis=-1)
    rgb[8:20, 24:40] = (0.9, 0.2, 0.1)  # a saturated patch: hard chroma edges
    rgb[30:40, 4:14] = (0.1, 0.3, 0.8)
    top = 255 if depth == 8 else 65535
    return np.round(rgb * top).astype(np.uint8 if depth == 8 else np.uint16)


def _make_video(path: Path, codec: str, pix_fmt: str, *, depth: int = 8, audio: str | None = None,
                tags: tuple[int, int, int, int] | None = None, options: dict | None = None) -> Path:
    """Write a test video: ``tags`` = (range, matrix, primaries, transfer) as FFmpeg numbers."""
    muxer = lutkern.video.CONTAINERS[path.suffix]
    with av.open(str(path), "w", format=muxer) as out:
        video = out.add_stream(codec, rate=RATE, options=options or {})
        video.width, video.height, video.pix_fmt = W, H, pix_fmt
        if tags:
            cc = video.codec_context
            cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc = tags
        sound = None
        if audio:
            sound = out.add_stream(audio, rate=SAMPLE_RATE)
            sound.layout = "mono"
        for i in range(FRAMES):
            rgb = av.VideoFrame.from_ndarray(_scene(i, depth), format="rgb24" if depth == 8 else "rgb48le")
            if tags:
                rgb.colorspace = tags[1]
            frame = rgb.reformat(format=pix_fmt, dst_color_range=tags[0] if tags else None)
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            fmt = sound.codec_context.format.name
            n = int(SAMPLE_RATE * FRAMES / RATE)
            tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / SAMPLE_RATE)
            samples = (tone * 32767).astype(np.int16) if fmt == "s16" else tone.astype(np.float32)
            for k in range(0, n, 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None, k : k + 1024]),
                                                   format=fmt, layout="mono")
                chunk.sample_rate, chunk.pts = SAMPLE_RATE, k
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


def _audio_packets(path: Path) -> list[tuple[int, bytes]]:
    with av.open(str(path)) as c:
        return [(p.pts, bytes(p)) for p in c.demux(c.streams.audio[0]) if p.dts is not None]


def _codes(path: Path) -> np.ndarray:
    return np.stack([f.codes for f in read_frames(path)]).astype(np.int64)


def _graded(path: Path, lut, interpolation: str = "trilinear") -> np.ndarray:
    frames = [grade_codes(f.codes, lut, interpolation=interpolation) for f in read_frames(path)]
    return np.stack(frames).astype(np.int64)


def _leftovers(folder: Path) -> list[Path]:
    return list(folder.glob("*" + TEMP_SUFFIX))


def test_mp4_with_audio_keeps_frames_timestamps_tags_and_audio(tmp_path, capsys):
    bt709 = (1, 1, 1, 1)  # limited range, BT.709 matrix, primaries and transfer
    src = _make_video(tmp_path / "clip.mp4", "libx264", "yuv420p", audio="aac", tags=bt709)
    out = tmp_path / "out"
    assert main(["--lut", "teal_orange", str(src), "--out", str(out)]) == 0
    dst = out / "clip.mp4"
    a, b = probe_video(src), probe_video(dst)
    assert (b.width, b.height, b.frames, b.rate, b.bit_depth) == (W, H, FRAMES, RATE, 8)
    assert (b.codec, b.pix_fmt, b.tags, b.audio_streams) == ("h264", "yuv420p", bt709, 1)
    src_frames, dst_frames = list(read_frames(src)), list(read_frames(dst))
    assert [f.time for f in dst_frames] == [f.time for f in src_frames]
    assert [f.pts for f in dst_frames] == [f.pts for f in src_frames] and b.time_base == a.time_base
    assert _audio_packets(dst) == _audio_packets(src)
    # Lossy (CRF 18 on a 64x48 clip): close to grading the decoded source, not equal.
    expected = _graded(src, load_lut("teal_orange"))
    assert np.abs(_codes(dst) - expected).mean() < 4
    assert f"{FRAMES} frames at" in capsys.readouterr().err
    assert not _leftovers(out)


def test_ffv1_on_an_rgb_source_is_lossless_grading(tmp_path):
    src = _make_video(tmp_path / "rgb.mkv", "ffv1", "bgr0", audio="flac")
    lut_path = tmp_path / "look.cube"
    write_cube(lut_path, LOOKS["cool_contrast"](17), precision=9)
    out = tmp_path / "out"
    out.mkdir()
    progress = []
    lut = load_lut(str(lut_path))
    report = lutkern.video.grade_video(src, out / "rgb.mkv", lut, interpolation="tetrahedral", codec="ffv1",
                                       on_progress=progress.append)
    assert (report.frames, report.codec, report.pix_fmt, report.audio_streams) == (FRAMES, "ffv1", "bgr0", 1)
    assert sum(progress) == pytest.approx(1) and len(progress) == FRAMES  # Matroska: count from duration
    # Lossless: the graded codes themselves (strips vs whole frames may round a float32 differently).
    assert np.abs(_codes(out / "rgb.mkv") - _graded(src, lut, "tetrahedral")).max() <= 1
    assert _audio_packets(out / "rgb.mkv") == _audio_packets(src)
    assert [f.pts for f in read_frames(out / "rgb.mkv")] == [f.pts for f in read_frames(src)]


def test_frames_looked_up_in_the_table_of_every_code_are_the_loops(tmp_path, monkeypatch):
    """Past the first frames, 8-bit frames are looked up in the table of every code graded
    (lutkern.grading.CodesGrader; here after 4 of the 12 frames): the same codes as grading each frame."""
    monkeypatch.setattr(lutkern.grading, "ALL_CODES", 4 * W * H)
    built = []
    real = lutkern.grading.every_code_graded
    monkeypatch.setattr(lutkern.grading, "every_code_graded", lambda *args: built.append(1) or real(*args))
    src = _make_video(tmp_path / "rgb.mkv", "ffv1", "bgr0")
    lut = load_lut("teal_orange", 17)
    lutkern.video.grade_video(src, tmp_path / "out.mkv", lut, interpolation="tetrahedral", codec="ffv1")
    assert built == [1]
    np.testing.assert_array_equal(_codes(tmp_path / "out.mkv"), _graded(src, lut, "tetrahedral"))


@pytest.mark.parametrize(
    "codec,pix_fmt,extra", [("libx265", "yuv420p10le", []), ("ffv1", "yuv444p10le", ["--codec", "ffv1"])]
)
def test_10_bit_source_gives_10_bit_output(tmp_path, codec, pix_fmt, extra):
    options = {"x265-params": "log-level=error"} if codec == "libx265" else {}
    src = _make_video(tmp_path / "deep.mkv", codec, pix_fmt, depth=16, options=options)
    assert probe_video(src).bit_depth == 10
    out = tmp_path / "out"
    assert main(["--lut", "faded_warm", str(src), "--out", str(out), *extra]) == 0
    info = probe_video(out / "deep.mkv")
    assert (info.bit_depth, info.pix_fmt, info.frames) == (10, pix_fmt, FRAMES)
    frames = list(read_frames(out / "deep.mkv"))
    assert frames[0].codes.dtype == np.uint16
    diff = np.abs(_codes(out / "deep.mkv") - _graded(src, load_lut("faded_warm"))) / 65535
    if codec == "ffv1":  # lossless 4:4:4: only the 10-bit YUV rounding, about a 10-bit code
        assert diff.max() < 2.5 / 1023
    else:  # x265 CRF 18 at 64x48, 4:2:0 resampled
        assert diff.mean() < 0.01


@pytest.mark.parametrize(
    "name,codec,audio",
    [("a.mov", "libx264", "aac"), ("b.webm", "libvpx-vp9", "libopus"), ("c.avi", "libx264", "pcm_s16le")],
)
def test_other_containers(tmp_path, name, codec, audio):
    """MOV and WebM keep their timestamps; AVI stores none (B-frames scramble a decoder's guesses): frame i
    is at i / rate there, and the output is encoded without B-frames so that it stays so."""
    src = _make_video(tmp_path / name, codec, "yuv420p", audio=audio)
    dst = tmp_path / "out" / name
    dst.parent.mkdir()
    report = lutkern.video.transcode(src, dst, lambda codes, index: codes)
    assert report.frames == FRAMES and report.audio_streams == 1
    times = [f.time for f in read_frames(dst)]
    assert times == [f.time for f in read_frames(src)]
    assert times == pytest.approx([i / RATE for i in range(FRAMES)], abs=1e-3)  # WebM: milliseconds
    assert _audio_packets(dst) == _audio_packets(src)
    assert np.abs(_codes(dst) - _codes(src)).mean() < 4  # an identity grade, one lossy generation


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="no ffmpeg binary to compare with")
@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral"])
def test_same_pixels_as_ffmpeg_lut3d(tmp_path, interpolation, grading_path):
    src = _make_video(tmp_path / "rgb.mkv", "ffv1", "bgr0")
    cube = tmp_path / "look.cube"
    write_cube(cube, LOOKS["teal_orange"](17), precision=9)
    ref = tmp_path / "ref.mkv"
    lut3d = f"lut3d=file={cube}:interp={interpolation}"
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-vf", lut3d, "-c:v", "ffv1", str(ref)]
    subprocess.run(cmd, check=True, timeout=120)
    out = tmp_path / "out"
    args = ["--lut", str(cube), "--interpolation", interpolation, "--codec", "ffv1", str(src)]
    assert main([*args, "--out", str(out)]) == 0
    assert probe_video(ref).pix_fmt == probe_video(out / "rgb.mkv").pix_fmt == "bgr0"
    # FFmpeg's lut3d truncates to a code where lutkern rounds: about half the codes are one apart.
    assert np.abs(_codes(out / "rgb.mkv") - _codes(ref)).max() <= 1


def test_with_and_without_torch_the_same_video(tmp_path, monkeypatch, command_modules):
    """A .cube graded without torch (the default) and through torch (LUTKERN_TORCH_FREE=0) gives the same
    video, frame for frame and timestamp for timestamp, and the first never imports torch. Lossless FFV1:
    libx264's own output was seen to differ between two runs of the same path (2-3 runs in 8)."""
    src = _make_video(tmp_path / "clip.mkv", "ffv1", "yuv420p")
    cube = tmp_path / "look.cube"
    write_cube(cube, LOOKS["teal_orange"](17), precision=9)
    outs = []
    for flag in ("1", "0"):
        monkeypatch.setenv("LUTKERN_TORCH_FREE", flag)
        outs.append(tmp_path / f"out{flag}")
        assert main(["--lut", str(cube), str(src), "--out", str(outs[-1])]) == 0
    frames = [list(read_frames(out / "clip.mkv")) for out in outs]
    assert len(frames[0]) == len(frames[1]) > 0
    for a, b in zip(*frames, strict=True):
        assert a.pts == b.pts
        np.testing.assert_array_equal(a.codes, b.codes)
    args = ["--lut", str(cube), str(src), "--device", "cpu", "--out", str(tmp_path / "probe")]
    assert "torch" not in command_modules(args)


def test_errors_are_one_line_per_file_and_write_nothing(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    text = folder / "notes.mp4"
    text.write_text("not a video\n")
    fifo = folder / "pipe.mp4"
    os.mkfifo(fifo)  # FFmpeg's probe would block on it forever
    good = _make_video(folder / "good.mkv", "ffv1", "bgr0")
    out = tmp_path / "out"
    out.mkdir()
    (out / "good.mkv").write_bytes(b"older")
    assert main(["--lut", "bw", str(text), str(fifo), str(good), "--out", str(out)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 3
    assert "notes.mp4" in errors[0] and "not a video" in errors[0]
    assert "pipe.mp4" in errors[1] and "not a regular file" in errors[1]
    assert "good.mkv" in errors[2] and "--overwrite" in errors[2]
    assert sorted(p.name for p in out.iterdir()) == ["good.mkv"]
    assert (out / "good.mkv").read_bytes() == b"older"

    monkeypatch.setattr(lutkern.video, "av", None)  # PyAV not installed: a per-file error, images still go
    assert main(["--lut", "bw", str(good), "--out", str(tmp_path / "o2")]) == 1
    assert "pip install 'lutkern[video]'" in capsys.readouterr().err
    assert not (tmp_path / "o2" / "good.mkv").exists()


@pytest.mark.parametrize("failure", [RuntimeError, OSError])
def test_a_failed_encode_leaves_no_partial_output(tmp_path, capsys, monkeypatch, failure):
    src = _make_video(tmp_path / "clip.mp4", "libx264", "yuv420p", audio="aac")
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.mp4").write_bytes(b"older")
    real = lutkern.grading.grade_codes
    calls = []

    def fail_on_frame_3(codes, lut, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise failure("disk on fire")
        return real(codes, lut, **kwargs)

    monkeypatch.setattr(lutkern.grading, "grade_codes", fail_on_frame_3)
    args = ["--lut", "bw", str(src), "--out", str(out), "--overwrite"]
    if failure is OSError:  # an expected error: one line, the batch goes on, exit status 1
        assert main(args) == 1
        assert "disk on fire" in capsys.readouterr().err
    else:  # a bug keeps its traceback
        with pytest.raises(RuntimeError, match="disk on fire"):
            main(args)
    assert (out / "clip.mp4").read_bytes() == b"older" and not _leftovers(out)
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4"]
    # Every pipeline thread stopped before the source closed, though the traceback keeps the frames alive:
    # a thread left decoding from a closed container crashes the process.
    assert not [t.name for t in threading.enumerate() if t.name.startswith("lutkern-video")]
