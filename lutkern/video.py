"""Grading videos with a LUT: every frame decoded to RGB codes, graded, encoded again; audio copied.

Needs PyAV (``pip install 'lutkern[video]'``; its wheels carry FFmpeg's libraries). This module imports
without it; its functions then raise a ValueError saying so.

Conventions:

- Frames are graded as images are (:func:`lutkern.grading.grade_codes`): RGB integer codes ``(H,W,3)``,
  uint8 for 8-bit sources, uint16 on the full 16-bit scale (``rgb48le``) for deeper ones (10, 12 bits).
- YUV is converted to RGB and back by FFmpeg's swscale with the matrix and range the stream is tagged
  with, the same both ways (untagged: BT.601, limited range, FFmpeg's default): before encoding, an
  identity LUT gives back 4:4:4 input within a code. Chroma stored at half resolution (4:2:0, 4:2:2) is
  resampled up for grading and down for encoding (bicubic): one generation of chroma filtering (measured
  on a synthetic pan: 0.6 codes on average in U, up to 6 at saturated edges). Transfer and primaries are
  tags only: as for images, the LUT acts on the stored code values.
- The output keeps the size, the frame rate, every frame's timestamp (AVI stores none: there frame ``i``
  is at ``i / rate``), the colour tags, the rotation tag, the sample aspect ratio and, where the encoder
  allows, the bit depth and chroma layout; audio streams are copied packet for packet. Other streams
  (subtitles, data, further video streams) are dropped and counted in the report.
- Memory: a few frames in flight whatever the length (plus the encoder's look-ahead: libx264's default
  holds about 40 frames).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .cube import CubeLUT
from .files import atomic_path
from .grading import grade_codes

try:
    import av
except ImportError:  # the optional extra: images are graded without it
    av = None

# Extension -> FFmpeg muxer. The muxer is named explicitly because the temporary file's name ends in
# ``.lutkern.tmp``.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
VIDEO_EXTENSIONS = frozenset(CONTAINERS)
DEFAULT_CRF = 18  # x264/x265: visually transparent for most material
# AVCOL_SPC_* / AVCOL_RANGE_* numbers of FFmpeg, for the tags of an output that changes RGB <-> YUV.
_SPC_RGB, _SPC_BT709, _RANGE_LIMITED, _RANGE_FULL = 0, 1, 1, 2


def _require_av() -> None:
    if av is None:
        raise ValueError("videos need PyAV: pip install 'lutkern[video]'")


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream of a file (FFmpeg's best one: cover art is skipped).

    ``frames`` is the container's count or, where it keeps none (Matroska), the duration times the rate,
    rounded; 0 when neither is known. ``rate`` is the average frame rate, ``time_base`` the unit of the
    timestamps. ``bit_depth`` is that of the decoded pixel format ``pix_fmt`` (8, 10, 12, 16).
    The colour tags are FFmpeg's numbers: ``color_range`` 0 unspecified, 1 limited (tv), 2 full (pc);
    ``colorspace`` (matrix) 0 RGB, 1 BT.709, 2 unspecified, 5/6 BT.601, 9 BT.2020; ``color_primaries`` and
    ``color_trc`` 1 BT.709, 2 unspecified, ...
    """

    width: int
    height: int
    frames: int
    rate: Fraction
    time_base: Fraction
    bit_depth: int
    pix_fmt: str
    codec: str
    audio_streams: int
    color_range: int
    colorspace: int
    color_primaries: int
    color_trc: int

    @property
    def tags(self) -> tuple[int, int, int, int]:
        """``(color_range, colorspace, color_primaries, color_trc)``."""
        return self.color_range, self.colorspace, self.color_primaries, self.color_trc


class CodesFrame(NamedTuple):
    """One decoded frame: ``codes`` ``(H,W,3)`` RGB uint8 (8-bit source) or uint16 (full 16-bit scale),
    its timestamp ``pts`` in the stream's ``time_base`` and ``time`` in seconds."""

    codes: np.ndarray
    pts: int
    time: float


@dataclass(frozen=True)
class TranscodeReport:
    """What :func:`transcode` did: frames written, wall time, the encoder and its pixel format, the audio
    streams copied and the other streams dropped."""

    frames: int
    seconds: float
    codec: str
    pix_fmt: str
    audio_streams: int
    dropped_streams: int

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def probe_video(path: str | Path) -> VideoInfo:
    """The :class:`VideoInfo` of ``path``; a one-line ValueError naming it when it is not a regular file,
    not a media file FFmpeg reads, or has no video stream."""
    path = Path(path)
    with _open_input(path) as container:
        return _info(path, container, _video_stream(path, container))


def read_frames(path: str | Path) -> Iterator[CodesFrame]:
    """Decode ``path``'s video frames one at a time, in presentation order, as :class:`CodesFrame`\\ s."""
    path = Path(path)
    with _open_input(path) as container:
        stream = _video_stream(path, container)
        info = _info(path, container, stream)
        rgb = _rgb_format(info.bit_depth)
        to_rgb = av.video.reformatter.VideoReformatter()
        for index, frame in enumerate(_decode_errors(path, container.decode(stream))):
            pts = _pts(frame, index, container, stream, info.rate)
            yield CodesFrame(_to_codes(to_rgb, frame, rgb), pts, float(pts * info.time_base))


def transcode(
    src: str | Path,
    dst: str | Path,
    grade: Callable[[np.ndarray, int], np.ndarray],
    *,
    codec: str | None = None,
    crf: int | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> TranscodeReport:
    """Decode every video frame of ``src``, replace its codes by ``grade(codes, index)`` (``codes`` as in
    :class:`CodesFrame`; it may grade in place) and encode the result into ``dst``, a container of the
    type its extension names (:data:`VIDEO_EXTENSIONS`); audio streams are copied packet for packet.

    ``codec``: the video encoder; by default libx264 for 8-bit sources and libx265 (10/12-bit) for deeper
    ones (libvpx-vp9 into .webm). Its pixel format is the one it supports nearest the source's: RGB stays
    RGB (so ffv1 is lossless on RGB sources), then the same chroma subsampling, then the same bit depth or
    more. ``crf``: the quality of an encoder that has a CRF setting (default :data:`DEFAULT_CRF`).
    ``on_progress(fraction)`` is called after each frame with the fraction of the video done since the
    previous call, when the frame count is known.

    Streaming: a few frames in memory. Written to a temporary file beside ``dst`` and renamed at the end;
    on any error the temporary is removed and ``dst`` left untouched. ``dst`` is not checked against
    ``src``: the caller applies its output rule (:func:`lutkern.files.check_output`).
    """
    src, dst = Path(src), Path(dst)
    muxer = CONTAINERS.get(dst.suffix.lower())
    if muxer is None:
        raise ValueError(f"{dst}: unknown video type {dst.suffix!r} (known: {' '.join(sorted(CONTAINERS))})")
    start = time.perf_counter()
    with _open_input(src) as inp:
        iv = _video_stream(src, inp)
        iv.thread_type = "AUTO"  # frame threads: decoding keeps up with encoding
        info = _info(src, inp, iv)
        audio_in = list(inp.streams.audio)
        dropped = len(inp.streams) - 1 - len(audio_in)
        codec = codec or _default_codec(info.bit_depth, muxer)
        options = encoder_options(codec, crf)
        pix_fmt = _output_pix_fmt(codec, av.VideoFormat(info.pix_fmt))
        tags = _output_tags(info, pix_fmt)
        rgb = _rgb_format(info.bit_depth)
        avi = muxer == "avi"  # AVI has no presentation timestamps: frame i at i / rate, stored in order
        time_base = 1 / info.rate if avi else info.time_base
        # One swscale context each way, made once: its set-up (filters, threads) costs about a frame's work.
        to_rgb, from_rgb = av.video.reformatter.VideoReformatter(), av.video.reformatter.VideoReformatter()
        frames = 0
        try:
            with atomic_path(dst) as tmp, av.open(str(tmp), "w", format=muxer) as out:
                ov = _output_stream(out, codec, options, info, pix_fmt, tags, time_base,
                                    iv.sample_aspect_ratio)
                audio_out = {a.index: out.add_stream_from_template(a) for a in audio_in}
                done = 0.0

                def convert(frame, index: int):
                    codes = grade(_to_codes(to_rgb, frame, rgb), index)
                    graded = _from_codes(from_rgb, codes, rgb, pix_fmt, tags)
                    graded.pts = index if avi else _pts(frame, index, inp, iv, info.rate)
                    graded.time_base = time_base
                    return graded, frame.rotation

                for kind, item in _ahead(_demuxed(inp, iv, audio_in, convert)):
                    if kind == "audio":
                        item.stream = audio_out[item.stream.index]
                        out.mux(item)
                        continue
                    graded, rotation = item
                    if frames == 0 and rotation:
                        ov.set_display_rotation(rotation)
                    out.mux(ov.encode(graded))
                    frames += 1
                    if on_progress is not None and info.frames:
                        step = min(1.0, frames / info.frames) - done
                        done += step
                        on_progress(step)
                out.mux(ov.encode(None))
        except av.FFmpegError as exc:
            raise ValueError(f"{src}: {_reason(exc)} (writing {dst} with {codec} {pix_fmt})") from None
    return TranscodeReport(frames, time.perf_counter() - start, codec, pix_fmt, len(audio_in), dropped)


def _output_stream(out, codec: str, options: dict, info: VideoInfo, pix_fmt: str, tags, time_base,
                   aspect) -> object:
    """The encoder's stream in ``out``: the source's size, rate and sample aspect, ``pix_fmt``, the colour
    ``tags`` and ``time_base`` (AVI's 1/rate: there frames are stored in order, without B-frames)."""
    stream = out.add_stream(codec, rate=info.rate, options=options)
    stream.width, stream.height, stream.pix_fmt = info.width, info.height, pix_fmt
    stream.time_base = stream.codec_context.time_base = time_base
    cc = stream.codec_context
    cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc = tags
    if aspect:
        cc.sample_aspect_ratio = aspect
    if out.format.name == "avi":
        cc.max_b_frames = 0
    return stream


def _demuxed(inp, iv, audio_in, convert) -> Iterator[tuple[str, object]]:
    """``("audio", packet)`` and ``("video", convert(frame, index))`` in the order the file stores them."""
    index = 0
    for packet in inp.demux(iv, *audio_in):
        if packet.stream.type == "audio":
            if packet.dts is not None:  # demux ends each stream with an empty packet
                yield "audio", packet
            continue
        for frame in packet.decode():
            yield "video", convert(frame, index)
            index += 1


def _ahead(items: Iterator, depth: int = 4) -> Iterator:
    """``items``, produced by a background thread up to ``depth`` ahead of the consumer: decoding,
    converting and grading the next frames overlaps encoding this one (FFmpeg's calls and the compiled
    LUT loop release the GIL; measured 1.2x the frames/s of one thread on 2 cores). The producer's
    exception is raised here; when the consumer stops, the producer stops after its current item."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            put((False, exc))
            return
        put((False, None))

    thread = threading.Thread(target=produce, name="lutkern-video-decode", daemon=True)
    thread.start()
    try:
        while True:
            more, value = slots.get()
            if not more:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        thread.join()


def grade_video(
    src: str | Path,
    dst: str | Path,
    lut: CubeLUT,
    *,
    interpolation: str = "trilinear",
    device: str | torch.device = "cpu",
    backend: str | None = None,
    codec: str | None = None,
    crf: int | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> TranscodeReport:
    """:func:`transcode` ``src`` into ``dst`` with every frame graded by ``lut``
    (:func:`lutkern.grading.grade_codes`: clamped and rounded to the source's codes)."""

    def grade(codes: np.ndarray, index: int) -> np.ndarray:
        return grade_codes(codes, lut, interpolation=interpolation, device=device, backend=backend)

    return transcode(src, dst, grade, codec=codec, crf=crf, on_progress=on_progress)


def encoder_options(codec: str, crf: int | None = None) -> dict[str, str]:
    """The options :func:`transcode` gives encoder ``codec``; a ValueError when this FFmpeg has no such
    video encoder, or ``crf`` is given to one without a CRF setting."""
    _require_av()
    try:
        ctx = av.CodecContext.create(codec, "w")
    except (av.FFmpegError, ValueError):
        raise ValueError(f"no video encoder {codec!r} in this FFmpeg (e.g. libx264, libx265, ffv1)") from None
    if ctx.type != "video":
        raise ValueError(f"{codec!r} is not a video encoder")
    has_crf = any(o.name == "crf" for o in ctx.supported_options.private)
    if crf is not None and not has_crf:
        raise ValueError(f"encoder {codec} has no CRF setting")
    options = {"crf": str(DEFAULT_CRF if crf is None else crf)} if has_crf else {}
    if codec == "libx265":
        options["x265-params"] = "log-level=error"  # x265 prints its banner on stderr, not through FFmpeg
    if codec == "libvpx-vp9":
        options["b"] = "0"  # with a CRF: constant quality, no bitrate target
    return options


def _default_codec(bit_depth: int, muxer: str) -> str:
    if muxer == "webm":  # WebM takes VP8/VP9/AV1 only; this libvpx is 8-bit
        return "libvpx-vp9"
    return "libx264" if bit_depth <= 8 else "libx265"


def _open_input(path: Path):
    _require_av()
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():  # a FIFO or a device would block FFmpeg's probe
        raise ValueError(f"{path}: not a regular file")
    try:
        return av.open(str(path), "r")
    except av.FFmpegError as exc:
        raise ValueError(f"{path}: not a video file FFmpeg can read ({_reason(exc)})") from None


def _video_stream(path: Path, container):
    if not container.streams.video:
        raise ValueError(f"{path}: no video stream")
    return container.streams.best("video")


def _info(path: Path, container, stream) -> VideoInfo:
    cc = stream.codec_context
    fmt = cc.format
    if fmt is None or not stream.width:
        raise ValueError(f"{path}: video stream without a known size or pixel format")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise ValueError(f"{path}: video stream without a frame rate")
    return VideoInfo(
        width=stream.width,
        height=stream.height,
        frames=_frame_count(container, stream, rate),
        rate=Fraction(rate),
        time_base=Fraction(stream.time_base),
        bit_depth=_bit_depth(fmt),
        pix_fmt=fmt.name,
        codec=cc.name,
        audio_streams=len(container.streams.audio),
        color_range=int(cc.color_range),
        colorspace=int(cc.colorspace),
        color_primaries=int(cc.color_primaries),
        color_trc=int(cc.color_trc),
    )


def _frame_count(container, stream, rate: Fraction) -> int:
    if stream.frames:
        return stream.frames
    if stream.duration:
        seconds = stream.duration * stream.time_base
    elif container.duration:
        seconds = Fraction(container.duration, av.time_base)
    else:
        return 0
    return round(seconds * rate)


def _bit_depth(fmt) -> int:
    return max(c.bits for c in fmt.components if not c.is_alpha)


def _rgb_format(bit_depth: int) -> str:
    return "rgb24" if bit_depth <= 8 else "rgb48le"


def _decode_errors(path: Path, frames):
    try:
        yield from frames
    except av.FFmpegError as exc:
        raise ValueError(f"{path}: {_reason(exc)}") from None


def _pts(frame, index: int, container, stream, rate: Fraction) -> int:
    """The frame's timestamp, in the stream's time base. AVI stores none (a decoder's guesses are out of
    order after B-frames): frame ``index`` is at ``index / rate`` there."""
    if container.format.name != "avi" and frame.pts is not None:
        return frame.pts
    return (stream.start_time or 0) + round(index / (rate * stream.time_base))


def _sws_flags(to_rgb: bool) -> int:
    flags = av.video.reformatter.Interpolation
    # Accurate rounding: without it an identity round trip is off by a code in Y, on average.
    chroma = flags.FULL_CHR_H_INT if to_rgb else flags.FULL_CHR_H_INP
    return flags.BICUBIC | flags.ACCURATE_RND | chroma


def _to_codes(reformatter, frame, rgb: str) -> np.ndarray:
    """``frame`` as RGB codes: its own colorspace and range tags drive the conversion (swscale reads them
    from the frame)."""
    return reformatter.reformat(frame, format=rgb, interpolation=_sws_flags(to_rgb=True)).to_ndarray()


def _from_codes(reformatter, codes: np.ndarray, rgb: str, pix_fmt: str, tags):
    """RGB ``codes`` as a frame of ``pix_fmt`` with the colour ``tags`` (see :func:`_output_tags`)."""
    color_range, colorspace, _, _ = tags
    frame = av.VideoFrame.from_ndarray(codes, format=rgb)
    frame.colorspace = colorspace  # the target matrix: reformat's default is the source frame's
    out = reformatter.reformat(frame, format=pix_fmt, dst_color_range=color_range or None,
                               interpolation=_sws_flags(to_rgb=False))
    # swscale names equivalent matrices its own way (BT.470BG as SMPTE 170M): the stream's tags win.
    out.color_range, out.colorspace, out.color_primaries, out.color_trc = tags
    return out


def _usable(fmt) -> bool:
    """An output pixel format: three colour components, no alpha, integer, little-endian, not the
    deprecated full-range ``yuvj*`` (the range is a tag)."""
    return (
        len(fmt.components) == 3
        and not any(c.is_alpha for c in fmt.components)
        and not (fmt.has_palette or fmt.is_bayer or fmt.is_bit_stream or fmt.is_big_endian)
        and not fmt.name.startswith("yuvj")
        and "f16" not in fmt.name
        and "f32" not in fmt.name
    )


def _output_pix_fmt(codec: str, src) -> str:
    """The pixel format of ``codec`` nearest the source format ``src``: RGB stays RGB, then the same chroma
    subsampling, then at least the source's bit depth, then the nearest depth; ties go to the encoder's
    own order (its preferred formats first)."""
    formats = [f for f in av.Codec(codec, "w").video_formats or () if _usable(f)]
    if not formats:
        raise ValueError(f"encoder {codec} takes no 3-component integer pixel format")
    depth = _bit_depth(src)

    def chroma(fmt) -> tuple[int, int]:
        return fmt.chroma_width(1024), fmt.chroma_height(1024)

    def key(fmt):
        d = _bit_depth(fmt)
        return fmt.is_rgb == src.is_rgb, chroma(fmt) == chroma(src), d >= depth, -abs(d - depth)

    return max(formats, key=key).name


def _output_tags(info: VideoInfo, pix_fmt: str) -> tuple[int, int, int, int]:
    """The source's colour tags, but for an output that is RGB where the source is YUV (an RGB matrix, full
    range) or YUV where the source is RGB (BT.709 matrix, limited range)."""
    out_rgb = av.VideoFormat(pix_fmt).is_rgb
    if out_rgb == av.VideoFormat(info.pix_fmt).is_rgb:
        return info.tags
    if out_rgb:
        return _RANGE_FULL, _SPC_RGB, info.color_primaries, info.color_trc
    return _RANGE_LIMITED, _SPC_BT709, info.color_primaries, info.color_trc


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)
