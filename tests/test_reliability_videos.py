"""The adversarial video corpus, by class: what ``python -m lutkern.apply`` and ``python -m
img2lut.predict`` keep of a video (timing, audio, tags, alpha, rotation, aspect) or say they cannot,
replace-as-a-set, runs that meet in one folder, files cut short, FFmpeg's errors in words, Ctrl-C.

Every clip is made here with PyAV: 64x48 (or odd sizes), a dozen frames."""

import csv
import io
import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

import img2lut.predict as predict  # noqa: E402
import lutkern.apply as apply  # noqa: E402
import lutkern.cli  # noqa: E402
import lutkern.files  # noqa: E402
import lutkern.grading as grading  # noqa: E402
import lutkern.video as video  # noqa: E402
from img2lut import checkpoint  # noqa: E402
from img2lut.model import ResNetLUTGenerator  # noqa: E402
from lutkern.files import TEMP_SUFFIX, OutputSet  # noqa: E402
from lutkern.imageio import write_codes  # noqa: E402
from lutkern.video import probe_video, read_frames  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_small_tensors")
W, H, SAMPLE_RATE = 64, 48, 48000


def _picture(i: int, w: int = W, h: int = H, *, scene: int = 0) -> np.ndarray:
    """Frame ``i`` ``(h,w,4)`` uint8 RGBA: a pan over a ramp (warm for scene 0, cool for scene 1), alpha
    a ramp across."""
    yy, xx = np.mgrid[0:h, i * 3:i * 3 + w].astype(np.float64)
    if scene == 0:
        rgb = np.stack([0.6 + 0.3 * xx / (3 * w), 0.3 + 0.4 * yy / h, 0.2 + 0.1 * np.sin(xx / 5)], -1)
    else:
        rgb = np.stack([0.1 + 0.1 * yy / h, 0.2 + 0.1 * xx / (3 * w), 0.6 + 0.2 * np.cos(yy / 7)], -1)
    alpha = np.broadcast_to(np.linspace(0, 1, w)[None, :, None], (h, w, 1))
    return np.round(np.concatenate([rgb, alpha], -1).clip(0, 1) * 255).astype(np.uint8)


def _clip(path: Path, codec: str = "libx264", pix_fmt: str = "yuv420p", *, frames: int = 12, rate=24,
          pts: list[int] | None = None, time_base: Fraction | None = None, audio: str | None = None,
          audio_tags: dict | None = None, rotation: int | None = None, sar: Fraction | None = None,
          options: dict | None = None, size: tuple[int, int] = (W, H), scenes: int = 1) -> Path:
    """A test clip: ``pts`` (in ``time_base``) for variable timing, ``scenes`` cuts into equal parts."""
    muxer = video.CONTAINERS[path.suffix]
    w, h = size
    with av.open(str(path), "w", format=muxer) as out:
        stream = out.add_stream(codec, rate=rate, options=options or {})
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if time_base is not None:
            stream.time_base = stream.codec_context.time_base = time_base
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        if rotation is not None:
            stream.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream(audio, rate=SAMPLE_RATE)
            sound.layout = "mono"
            sound.metadata.update(audio_tags or {})
        alpha = any(c.is_alpha for c in av.VideoFormat(pix_fmt).components)
        for i in range(frames):
            rgba = _picture(i, w, h, scene=i * scenes // frames)
            image = av.VideoFrame.from_ndarray(rgba if alpha else np.ascontiguousarray(rgba[..., :3]),
                                               format="rgba" if alpha else "rgb24")
            frame = image.reformat(format=pix_fmt)
            frame.pts = pts[i] if pts else i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if sound is not None:
            fmt = sound.codec_context.format.name
            n, step = int(SAMPLE_RATE * frames / rate), sound.codec_context.frame_size or 1024
            tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / SAMPLE_RATE)
            kinds = {"s16": (np.int16, 32767), "s32": (np.int32, 2**31 - 1)}
            dtype, scale = kinds.get(fmt.rstrip("p"), (np.float32, 1))
            samples = (tone * scale).astype(dtype)
            for k in range(0, n, step):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None, k:k + step]),
                                                   format=fmt, layout="mono")
                chunk.sample_rate, chunk.pts = SAMPLE_RATE, k
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


def _times(path: Path) -> list[float]:
    return [round(f.time, 6) for f in read_frames(path)]


def _audio(path: Path) -> list[tuple[int, bytes]]:
    with av.open(str(path)) as c:
        return [(p.pts, bytes(p)) for p in c.demux(c.streams.audio[0]) if p.dts is not None]


def _rgba(path: Path) -> np.ndarray:
    """Every frame as RGBA codes, alpha decoded as transcode decodes it."""
    info = probe_video(path)
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        decoder = video._decoder(stream, info)
        frames = [f.to_ndarray(format="rgba") for packet in c.demux(stream)
                  for f in (decoder.decode(packet) if decoder else packet.decode())]
    return np.stack(frames).astype(int)


def _apply(*argv: str) -> int:
    return apply.main(["--lut", "teal_orange", *map(str, argv)])


def _leftovers(folder: Path) -> list[Path]:
    return list(folder.glob(".*" + TEMP_SUFFIX))


# Timing --------------------------------------------------------------------------------------------------

def test_avi_with_dropped_frames_keeps_its_slots(tmp_path):
    """An AVI stores a slot per frame at its rate; a dropped frame is an empty slot. 12 frames over
    1.19 s stay 12 frames over 1.19 s."""
    slots = [0, 10, 20, 40, 50, 60, 80, 90, 100, 110, 112, 119]
    src = _clip(tmp_path / "drop.avi", "mpeg4", rate=100, time_base=Fraction(1, 100), pts=slots)
    assert _apply(src, "--out", tmp_path / "out") == 0
    assert _times(tmp_path / "out" / "drop.avi") == _times(src) == [s / 100 for s in slots]


def test_mpeg4_avi_frames_stay_with_their_copied_mp3(tmp_path):
    """FFmpeg's MPEG-4 part 2 encoder leaves slot 1 of an AVI empty: frames must keep their slots, or
    every frame after it runs one frame early against the audio, copied packet for packet."""
    src = _clip(tmp_path / "m4.avi", "mpeg4", rate=25, frames=20, audio="libmp3lame")
    assert _times(src)[:3] == [0.0, 0.08, 0.12]
    assert _apply(src, "--out", tmp_path / "out") == 0
    dst = tmp_path / "out" / "m4.avi"
    assert _times(dst) == _times(src) and _audio(dst) == _audio(src)


@pytest.mark.parametrize("name", ["vfr.mkv", "vfr.mp4", "vfr.mov"])
def test_variable_frame_rate_keeps_every_timestamp(tmp_path, name):
    pts = [0, 40, 80, 200, 240, 500, 520, 540, 700, 701, 900, 1000]
    src = _clip(tmp_path / name, time_base=Fraction(1, 1000), pts=pts)
    assert _apply(src, "--out", tmp_path / "out") == 0
    assert _times(tmp_path / "out" / name) == _times(src) == [p / 1000 for p in pts]


# Container metadata --------------------------------------------------------------------------------------

def test_rotation_is_kept_when_audio_comes_first(tmp_path):
    src = _clip(tmp_path / "phone.mp4", audio="aac", rotation=90)
    assert _apply(src, "--out", tmp_path / "out") == 0
    with av.open(str(tmp_path / "out" / "phone.mp4")) as c:
        assert next(c.decode(video=0)).rotation == 90
        assert len(c.streams.audio) == 1


@pytest.mark.parametrize("name", ["tags.mkv", "tags.mp4", "tags.mov"])
def test_audio_language_and_title_are_kept(tmp_path, name):
    src = _clip(tmp_path / name, audio="aac", audio_tags={"language": "fre", "title": "Commentaire"})
    assert _apply(src, "--out", tmp_path / "out") == 0
    with av.open(str(src)) as a, av.open(str(tmp_path / "out" / name)) as b:
        want, got = a.streams.audio[0].metadata, b.streams.audio[0].metadata
        assert got.get("language") == want.get("language") == (None if name.endswith(".mov") else "fre")
        assert got.get("title", got.get("name")) == want.get("title", want.get("name")) == "Commentaire"


def test_sample_aspect_is_kept_or_its_loss_said(tmp_path, capsys):
    src = _clip(tmp_path / "anamorphic.mkv", sar=Fraction(4, 3))
    assert probe_video(src).aspect == Fraction(4, 3)
    assert _apply(src, "--out", tmp_path / "x264") == 0  # H.264 stores it in its own stream
    assert probe_video(tmp_path / "x264" / "anamorphic.mkv").aspect == Fraction(4, 3)
    assert "could not be stored" not in capsys.readouterr().err
    assert _apply(src, "--out", tmp_path / "ffv1", "--codec", "ffv1") == 0  # FFV1 in Matroska cannot
    err = capsys.readouterr().err
    assert re.search(r"anamorphic\.mkv: .*sample aspect ratio 4:3 could not be stored with ffv1", err)


# Alpha -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt", "options", "tolerance"),
    [
        ("png.mov", "png", "rgba", {}, 0),
        ("qtrle.mov", "qtrle", "argb", {}, 0),
        ("ffv1.mkv", "ffv1", "yuva444p", {}, 1),
        ("prores.mov", "prores_ks", "yuva444p10le", {"profile": "4444"}, 1),
        ("vp9.webm", "libvpx-vp9", "yuva420p", {"lossless": "1"}, 1),
    ],
)
def test_alpha_is_kept_where_the_encoder_can(tmp_path, capsys, name, codec, pix_fmt, options, tolerance):
    src = _clip(tmp_path / name, codec, pix_fmt, frames=4, options=options)
    assert probe_video(src).alpha
    assert apply.main(["--lut", "bw", str(src), "--out", str(tmp_path / "out")]) == 0
    assert "alpha dropped" not in capsys.readouterr().err
    dst = tmp_path / "out" / name
    assert probe_video(dst).alpha
    before, after = _rgba(src), _rgba(dst)
    assert np.abs(after[..., 3] - before[..., 3]).max() <= tolerance  # alpha as it was
    assert np.abs(after[..., 0] - after[..., 2]).max() <= 2 and np.abs(after - before)[..., :3].max() > 30


def test_alpha_the_encoder_cannot_keep_is_said(tmp_path, capsys):
    src = _clip(tmp_path / "logo.mov", "png", "rgba", frames=3)
    assert _apply(src, "--out", tmp_path / "out", "--codec", "libx264") == 0
    assert "logo.mov: " in (err := capsys.readouterr().err) and "alpha dropped: libx264" in err
    assert not probe_video(tmp_path / "out" / "logo.mov").alpha


# Files cut short ---------------------------------------------------------------------------------------

def _cut(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def _faststart(src: Path, dst: Path) -> Path:
    """``src`` remuxed with its index first (what a cut download of a web video looks like)."""
    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for packet in i.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                o.mux(packet)
    return dst


@pytest.mark.parametrize("kind", ["mp4", "mkv", "avi"])
def test_a_file_cut_short_is_an_error_not_half_a_video(tmp_path, capsys, kind):
    whole = _clip(tmp_path / f"whole.{kind}", frames=24, audio="aac" if kind != "avi" else None)
    if kind == "mp4":
        whole = _faststart(whole, tmp_path / "fast.mp4")
    cut = _cut(whole, tmp_path / f"cut.{kind}")
    assert _apply(cut, whole, "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert re.search(rf"error: .*cut\.{kind}: cut short \(", err)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [whole.name]


# FFmpeg's errors in words ------------------------------------------------------------------------------

def test_odd_size_into_a_half_resolution_chroma_encoder_says_what_would_work(tmp_path, capsys):
    src = _clip(tmp_path / "odd.mkv", "ffv1", "yuv420p", size=(63, 47), frames=2)
    assert _apply(src, "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "63x47" in err and "divisible by 2" in err and "--codec ffv1" in err
    assert "Generic error" not in err
    assert _apply(src, "--out", tmp_path / "out", "--codec", "ffv1") == 0


def test_an_absent_hardware_encoder_is_refused_before_any_work(tmp_path, capsys):
    try:
        video.encoder_options("h264_nvenc")
        pytest.skip("this machine has an NVIDIA encoder")
    except ValueError:
        pass
    src = _clip(tmp_path / "a.mp4", frames=2)
    for command in (lambda: _apply(src, "--out", tmp_path / "o", "--codec", "h264_nvenc"),
                    lambda: predict.main([str(tmp_path / "no-model.pt"), str(src), "--out",
                                          str(tmp_path / "o"), "--codec", "h264_nvenc"])):
        assert command() == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "h264_nvenc cannot start here" in err and "libx264" in err
        assert "needs hardware and drivers this machine lacks" in err
    assert not (tmp_path / "o").exists()


def test_an_encoder_limit_is_said_in_the_encoders_words(tmp_path, capsys):
    """MPEG-4 part 2 takes time bases up to 1/65535: FFmpeg's "Invalid argument" becomes its reason."""
    fine = _clip(tmp_path / "fine.mkv", time_base=Fraction(1, 1000), frames=2)
    fine90k = _clip(tmp_path / "90k.mov", time_base=Fraction(1, 90000), pts=[0, 3750], frames=2)
    assert probe_video(fine90k).time_base == Fraction(1, 90000)
    assert _apply(fine90k, fine, "--out", tmp_path / "out", "--codec", "mpeg4") == 1
    err = capsys.readouterr().err
    assert "90k.mov: mpeg4 cannot encode 64x48 yuv420p into .mov (" in err and "65535" in err
    assert "Invalid argument" not in err and (tmp_path / "out" / "fine.mkv").is_file()


def test_a_container_that_cannot_hold_the_codec(tmp_path, capsys):
    src = _clip(tmp_path / "a.webm", "libvpx-vp9", frames=2)
    assert _apply(src, "--out", tmp_path / "out", "--codec", "libx264") == 1
    assert "a .webm file cannot hold libx264 video" in capsys.readouterr().err


# Concurrent runs and replace-as-a-set ------------------------------------------------------------------

def test_a_name_another_run_wrote_meanwhile_is_left_as_it_is(tmp_path, monkeypatch, capsys):
    """Two runs into one folder, same output name, no --overwrite: the one that finishes second fails
    with one line; the first one's file stays."""
    src = _clip(tmp_path / "clip.mkv", "ffv1", "bgr0", frames=3)
    out = tmp_path / "out"
    real = grading.grade_codes

    def other_run_finishes_first(codes, lut, **kwargs):
        if not (out / "clip.mkv").exists():
            (out / "clip.mkv").write_bytes(b"the other run's video")
        return real(codes, lut, **kwargs)

    monkeypatch.setattr(grading, "grade_codes", other_run_finishes_first)
    assert _apply(src, "--out", out) == 1
    assert "clip.mkv appeared while this run was writing it" in capsys.readouterr().err
    assert (out / "clip.mkv").read_bytes() == b"the other run's video" and not _leftovers(out)


@pytest.mark.parametrize("name", ["photo.png", "clip.mkv"])
def test_a_full_disk_names_the_output_never_a_temporary(tmp_path, monkeypatch, capsys, name):
    src = tmp_path / name
    if name.endswith(".png"):
        write_codes(src, np.ascontiguousarray(_picture(0)[..., :3]))
    else:
        _clip(src, "ffv1", "bgr0", frames=2)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    assert _apply(src, "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"{name}: cannot write {tmp_path / 'out' / name}: No space left on device\n" in err, err
    assert TEMP_SUFFIX not in err and ".staging" not in err
    assert list((tmp_path / "out").iterdir()) == []


def test_an_output_set_fails_whole_when_one_name_is_taken(tmp_path):
    (tmp_path / "b.cube").write_text("another run's")
    with OutputSet(tmp_path, replace=False) as outputs:
        for name in ("a.mp4", "b.cube", "c.csv"):
            outputs.path(tmp_path / name).write_text("new " + name)
        with pytest.raises(FileExistsError, match="b.cube appeared"):
            outputs.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.cube"]  # a.mp4 taken back, no staging


def test_an_output_set_removes_only_what_it_did_not_just_write(tmp_path):
    for name in ("a.shot001.cube", "a.shot002.cube"):
        (tmp_path / name).write_text("old")
    with OutputSet(tmp_path, replace=True) as outputs:
        outputs.path(tmp_path / "a.shot001.cube").write_text("new")
        outputs.commit(remove=[tmp_path / "a.shot001.cube", tmp_path / "a.shot002.cube"])
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a.shot001.cube": "new"}


def test_an_output_set_puts_back_what_it_replaced_when_a_rename_fails(tmp_path, monkeypatch):
    for name in ("a.mp4", "b.cube"):
        (tmp_path / name).write_text("old " + name)
    real = os.replace

    def fail_on_b(src, dst):
        if str(dst).endswith("b.cube"):
            raise OSError(5, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_b)
    with OutputSet(tmp_path, replace=True) as outputs:
        for name in ("a.mp4", "b.cube"):
            outputs.path(tmp_path / name).write_text("new " + name)
        with pytest.raises(OSError, match="cannot write .*b.cube"):
            outputs.commit()
    left = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert left == {"a.mp4": "old a.mp4", "b.cube": "old b.cube"}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    net = ResNetLUTGenerator(5, head="basis", basis_luts=4).eval()
    with torch.no_grad():
        net.basis.normal_(std=0.2)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    checkpoint.save_checkpoint(path, model=net, config={"image_size": 32, "cnn_size": 16})
    return path


def _predict(model: Path, *argv) -> int:
    return predict.main([str(model), *map(str, argv), "--device", "cpu"])


def _edits(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _set(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_predict_replaces_a_set_only_once_the_new_one_is_complete(tmp_path, model, monkeypatch, capsys):
    src = _clip(tmp_path / "clip.mkv", "ffv1", "bgr0", frames=8, scenes=2)
    out = tmp_path / "out"
    assert _predict(model, src, "--out", out, "--codec", "ffv1") == 0
    before = _set(out)
    assert sorted(before) == ["clip.mkv", "clip.shot001.cube", "clip.shot002.cube", "clip.shots.csv"]

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:  # the disk fills at the edit list, the last file of the set
        patch.setattr(predict, "_write_edits", disk_full)
        assert _predict(model, src, "--out", out, "--codec", "ffv1", "--overwrite", "--per-frame") == 1
    assert "No space left on device" in capsys.readouterr().err
    assert _set(out) == before and not _leftovers(out)


def test_predict_overwrite_with_fewer_shots_removes_the_old_extra_cubes(tmp_path, model):
    src = _clip(tmp_path / "clip.mkv", "ffv1", "bgr0", frames=8, scenes=2)
    out = tmp_path / "out"
    assert _predict(model, src, "--out", out, "--cube-only") == 0
    (out / "clip.shot009.cube").write_text("not named by the edit list: not ours to remove")
    assert _predict(model, src, "--out", out, "--cube-only", "--overwrite", "--cut-threshold", "2") == 0
    rows = _edits(out / "clip.shots.csv")
    assert [r["cube"] for r in rows] == ["clip.shot001.cube"]
    left = sorted(p.name for p in out.iterdir())
    assert left == ["clip.shot001.cube", "clip.shot009.cube", "clip.shots.csv"]


def test_predict_overwrite_in_another_format_replaces_the_old_shot_files(tmp_path, model):
    src = _clip(tmp_path / "clip.mkv", "ffv1", "bgr0", frames=8, scenes=2)
    out = tmp_path / "out"
    assert _predict(model, src, "--out", out, "--cube-only") == 0
    assert _predict(model, src, "--out", out, "--cube-only", "--overwrite", "--format", "3dl") == 0
    assert [r["cube"] for r in _edits(out / "clip.shots.csv")] == ["clip.shot001.3dl", "clip.shot002.3dl"]
    assert sorted(p.name for p in out.iterdir()) == ["clip.shot001.3dl", "clip.shot002.3dl", "clip.shots.csv"]


def test_two_outputs_of_one_run_never_share_a_name(tmp_path, model, capsys):
    """An image ``a.shot001.png`` writes ``a.shot001.cube``, which a video ``a.mp4``'s first shot would
    write too: the later input is refused before anything is written, in either order."""
    image = tmp_path / "a.shot001.png"
    write_codes(image, np.ascontiguousarray(_picture(0)[..., :3]))
    clip = _clip(tmp_path / "a.mkv", "ffv1", "bgr0", frames=3)
    for order, written in (((image, clip), ["a.shot001.cube", "a.shot001.png"]),
                           ((clip, image), ["a.mkv", "a.shot001.cube", "a.shots.csv"])):
        out = tmp_path / f"out{len(written)}"
        assert _predict(model, *order, "--out", out, "--codec", "ffv1") == 1
        err = capsys.readouterr().err
        assert f"{order[1]}: a.shot001.cube would be written twice (also for {order[0]})" in err
        assert sorted(p.name for p in out.iterdir()) == written


def test_variable_frame_rate_edit_list_shots_meet_without_overlap(tmp_path, model):
    pts = [0, 40, 80, 200, 240, 500, 520, 540]  # 1/1000 s: shot 2 starts at frame 4 (0.24 s)
    src = _clip(tmp_path / "vfr.mkv", "ffv1", "bgr0", frames=8, scenes=2, time_base=Fraction(1, 1000),
                pts=pts)
    assert _predict(model, src, "--out", tmp_path / "out", "--cube-only") == 0
    rows = _edits(tmp_path / "out" / "vfr.shots.csv")
    assert [(r["first_frame"], r["last_frame"]) for r in rows] == [("0", "3"), ("4", "7")]
    # Shot 1 ends where shot 2 starts; the last frame lasts what the container says (the encoder's 1/24 s).
    spans = [(float(r["start_seconds"]), float(r["end_seconds"])) for r in rows]
    assert spans == [(0.0, 0.24), (0.24, 0.581)]


# Command-line checks before any work -------------------------------------------------------------------

@pytest.mark.parametrize("flags", [["--codec", "nosuch"], ["--codec", "ffv1", "--crf", "20"],
                                   ["--cut-threshold", "nan"], ["--cut-threshold", "inf"],
                                   ["--cut-threshold", "-0.1"], ["--cut-threshold", "2.5"]])
def test_predict_checks_video_flags_before_any_work(tmp_path, capsys, flags):
    src = _clip(tmp_path / "a.mp4", frames=1)
    try:  # a model that does not exist: the flags are refused before it is read
        status = predict.main([str(tmp_path / "no-model.pt"), str(src), "--out", str(tmp_path / "o"),
                               *flags])
    except SystemExit as exc:
        status = exc.code
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.count("\n") == 0 and "no-model.pt" not in err, err
    assert not (tmp_path / "o").exists()


# Ctrl-C ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["apply", "predict"])
def test_ctrl_c_is_one_line_and_leaves_the_old_files(tmp_path, model, monkeypatch, capsys, command):
    src = _clip(tmp_path / "clip.mkv", "ffv1", "bgr0", frames=6)
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.mkv").write_bytes(b"older")
    real, calls = grading.grade_codes, []

    def interrupted_at_frame_3(codes, lut, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(codes, lut, **kwargs)

    monkeypatch.setattr(grading, "grade_codes", interrupted_at_frame_3)
    monkeypatch.setattr(predict, "grade_codes", interrupted_at_frame_3)
    if command == "apply":
        status = _apply(src, "--out", out, "--overwrite")
    else:
        status = _predict(model, src, "--out", out, "--overwrite", "--codec", "ffv1")
    prog = {"apply": apply.PROG, "predict": predict.PROG}[command]
    assert status == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"{prog}: interrupted"
    assert _set(out) == {"clip.mkv": b"older"} and not _leftovers(out)


# Names in the progress bar -----------------------------------------------------------------------------

def test_progress_shows_names_escaped(tmp_path, monkeypatch):
    name = "red\x1b[31m[bold]x\nline.png"
    write_codes(tmp_path / name, np.ascontiguousarray(_picture(0)[..., :3]))
    screen = io.StringIO()
    monkeypatch.setattr(apply, "console", lambda: lutkern.cli.Console(file=screen, force_terminal=True,
                                                                       width=300, highlight=False))
    assert _apply(tmp_path / name, "--out", tmp_path / "out") == 0
    shown = screen.getvalue()
    assert "red\\x1b[31m[bold]x line.png" in shown and "\x1b[31m[bold]" not in shown
