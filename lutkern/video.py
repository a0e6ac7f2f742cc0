"""Grading videos with a LUT: every frame decoded to RGB codes, graded, encoded again; audio copied.

Needs PyAV (``pip install 'lutkern[video]'``; its wheels carry FFmpeg's libraries). This module imports
without it; its functions then raise a ValueError saying so.

Conventions:

- Frames are graded as images are (:func:`lutkern.grading.grade_codes`): RGB integer codes ``(H,W,3)``,
  uint8 for 8-bit sources, uint16 on the full 16-bit scale (``rgb48le``) for deeper ones (10, 12 bits).
  8-bit frames past the first 16.7 M pixels are looked up in a table of every code graded
  (:class:`lutkern.grading.CodesGrader`: the same codes, a tenth of the work).
- YUV is converted to RGB and back by FFmpeg's swscale with the matrix and range the stream is tagged
  with, the same both ways (untagged: BT.601, limited range, FFmpeg's default): before encoding, an
  identity LUT gives back 4:4:4 input within a code. Chroma stored at half resolution (4:2:0, 4:2:2) is
  resampled up for grading and down for encoding (bicubic): one generation of chroma filtering (measured
  on a synthetic pan: 0.6 codes on average in U, up to 6 at saturated edges). Transfer and primaries are
  tags only: as for images, the LUT acts on the stored code values.
- Timing: every frame keeps its timestamp. AVI stores none, only a slot per frame at the stream's rate
  (an empty slot is a dropped frame): there a frame's time is its slot, read from the packets in file
  order (decoders' own guesses are out of order after B-frames), and the output fills the same slots.
- The output keeps the size, the colour tags, the rotation, the sample aspect ratio, the container's
  and the streams' tags (title, language; not the encoder's), alpha where the encoder has a pixel format
  with alpha and, where it allows, the bit depth and chroma layout; audio streams are copied packet for
  packet. What the output could not keep is said in :attr:`TranscodeReport.notes` (checked by reading the
  written file back). Other streams (subtitles, data, further video streams) are dropped and counted.
- A file cut short (a copy that did not finish: its container says it is longer than it is) is refused
  before any work rather than graded to the frames that happen to be there.
- Memory: a few frames in flight whatever the length (plus the encoder's look-ahead: libx264's default
  holds about 40 frames, and the 48 MiB table of an 8-bit source).
- Threads: one decodes and converts to RGB, one grades and converts to the encoder's format, the caller's
  encodes (the encoder with its own frame threads, as the ffmpeg command has them).
"""

from __future__ import annotations

import collections
import contextlib
import io
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ._lazy import optional_module
from .cube import CubeLUT
from .files import atomic_path
from .grading import CodesGrader

if TYPE_CHECKING:
    import torch

av = optional_module("av")  # the optional extra (None without it): images are graded without it; its
# package imports av.logging

# Extension -> FFmpeg muxer. The muxer is named explicitly because the temporary file's name ends in
# ``.lutkern.tmp``.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
VIDEO_EXTENSIONS = frozenset(CONTAINERS)
DEFAULT_CRF = 18  # x264/x265: visually transparent for most material
SOFTWARE_ENCODERS = "libx264, libx265, libvpx-vp9, ffv1"
# AVCOL_SPC_* / AVCOL_RANGE_* numbers of FFmpeg, for the tags of an output that changes RGB <-> YUV.
_SPC_RGB, _SPC_BT709, _RANGE_LIMITED, _RANGE_FULL = 0, 1, 1, 2
# Decoder -> the encoder that keeps a source's alpha, where the default encoder would drop it.
_ALPHA_ENCODERS = {"prores": "prores_ks", "png": "png", "qtrle": "qtrle", "vp9": "libvpx-vp9", "ffv1": "ffv1",
                   "utvideo": "utvideo", "rawvideo": "ffv1"}
# Encoders that need a device (a GPU, a media engine) besides FFmpeg, by their name's end.
_HARDWARE = ("_nvenc", "_qsv", "_amf", "_vaapi", "_v4l2m2m", "_videotoolbox", "_vulkan", "_mf", "_mediacodec",
             "_omx", "_rkmpp", "_d3d12va")
# Tags not copied: the writer's own, and statistics of the source stream that would be wrong for ours.
_OWN_TAGS = frozenset({"encoder", "duration", "major_brand", "minor_version", "compatible_brands", "bps",
                       "number_of_frames", "number_of_bytes", "_statistics_writing_app",
                       "_statistics_writing_date_utc", "_statistics_tags", "vendor_id", "alpha_mode"})


def _require_av() -> None:
    if av is None:
        raise ValueError("videos need PyAV: pip install 'lutkern[video]'")


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream of a file (FFmpeg's best one: cover art is skipped).

    ``frames`` is the container's count (AVI: its non-empty slots) or, where it keeps none (Matroska), the
    duration times the rate, rounded; 0 when neither is known. ``rate`` is the average frame rate,
    ``time_base`` the unit of the timestamps. ``bit_depth`` is that of the decoded pixel format
    ``pix_fmt`` (8, 10, 12, 16; VP9 with alpha decodes with its alpha plane, ``yuva420p``), ``alpha``
    whether it has an alpha channel. The colour tags are FFmpeg's numbers: ``color_range`` 0
    unspecified, 1 limited (tv), 2 full (pc); ``colorspace`` (matrix) 0 RGB, 1 BT.709, 2 unspecified, 5/6
    BT.601, 9 BT.2020; ``color_primaries`` and ``color_trc`` 1 BT.709, 2 unspecified, ...
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
    alpha: bool = False
    aspect: Fraction | None = None  # the sample aspect ratio, None when square or unknown

    @property
    def tags(self) -> tuple[int, int, int, int]:
        """``(color_range, colorspace, color_primaries, color_trc)``."""
        return self.color_range, self.colorspace, self.color_primaries, self.color_trc


class CodesFrame(NamedTuple):
    """One decoded frame: ``codes`` ``(H,W,3)`` RGB uint8 (8-bit source) or uint16 (full 16-bit scale),
    its timestamp ``pts`` in the stream's ``time_base``, ``time`` in seconds and ``duration`` in seconds:
    up to the next frame (the last one: as long as the container says, else 1/rate)."""

    codes: np.ndarray
    pts: int
    time: float
    duration: float


@dataclass(frozen=True)
class TranscodeReport:
    """What :func:`transcode` did: frames written, wall time, the encoder and its pixel format, the audio
    streams copied, the other streams dropped, and ``notes``: what the output could not keep (one line
    each)."""

    frames: int
    seconds: float
    codec: str
    pix_fmt: str
    audio_streams: int
    dropped_streams: int
    notes: tuple[str, ...] = field(default=())

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def probe_video(path: str | Path) -> VideoInfo:
    """The :class:`VideoInfo` of ``path``; a one-line ValueError naming it when it is not a regular file,
    not a media file FFmpeg reads, has no video stream, or is cut short."""
    path = Path(path)
    with _open_input(path) as container:
        return _info(path, container, _video_stream(path, container))


def read_frames(path: str | Path) -> Iterator[CodesFrame]:
    """Decode ``path``'s video frames one at a time, in presentation order, as :class:`CodesFrame`\\ s."""
    path = Path(path)
    with _open_input(path) as container:
        stream = _video_stream(path, container)
        info = _info(path, container, stream)
        rgb = _rgb_format(info.bit_depth, alpha=False)
        to_rgb = av.video.reformatter.VideoReformatter()
        held = None  # each frame is yielded once the next one tells where it ends
        for _audio_or_video, (frame, _, pts) in _decoded(path, container, stream, info, []):
            if held is not None:
                yield _codes_frame(held, info, pts - held[1])
            held = (_to_codes(to_rgb, frame, rgb), pts, frame.duration)
        if held is not None:
            end = _stream_end(stream)
            yield _codes_frame(held, info, held[2] or (end - held[1] if end and end > held[1] else None))


def _codes_frame(held, info: VideoInfo, duration: int | None) -> CodesFrame:
    """``held`` = (codes, pts, container's duration) as a :class:`CodesFrame` lasting ``duration`` (time
    base units; None: 1/rate)."""
    codes, pts, _ = held
    seconds = float(duration * info.time_base) if duration else float(1 / info.rate)
    return CodesFrame(codes, pts, float(pts * info.time_base), seconds)


def _stream_end(stream) -> int | None:
    """Where the stream ends, in its time base, when the container says (else None)."""
    if stream.duration:
        return (stream.start_time or 0) + stream.duration
    return None


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
    type its extension names (:data:`VIDEO_EXTENSIONS`); audio streams are copied packet for packet, the
    alpha channel of a source that has one kept where the encoder can.

    ``codec``: the video encoder; by default libx264 for 8-bit sources and libx265 (10/12-bit) for deeper
    ones (libvpx-vp9 into .webm), and for a source with alpha its own format's encoder where it keeps
    alpha (ProRes 4444, PNG, QuickTime RLE, VP9, FFV1). Its pixel format is the one it supports nearest
    the source's: alpha kept, RGB stays RGB (so ffv1 is lossless on RGB sources), then the same chroma
    subsampling, then the same bit depth or more. ``crf``: the quality of an encoder that has a CRF
    setting (default :data:`DEFAULT_CRF`). ``on_progress(fraction)`` is called after each frame with the
    fraction of the video done since the previous call, when the frame count is known.

    Before any frame is decoded the encoder is tried on one blank frame of the source's size in an
    in-memory file of ``dst``'s type (:func:`check_encoder`): what FFmpeg would refuse late is said at
    once, in words. Streaming: a few frames in memory. Written to a temporary file beside ``dst`` and
    renamed at the end; on any error the temporary is removed and ``dst`` left untouched. ``dst`` is not
    checked against ``src``: the caller applies its output rule (:func:`lutkern.files.check_output`).
    """
    src, dst = Path(src), Path(dst)
    start = time.perf_counter()
    plan = check_encoder(src, dst, codec, crf)
    with _open_input(src) as inp:
        iv = _video_stream(src, inp)
        info = _info(src, inp, iv)
        audio_in = list(inp.streams.audio)
        dropped = len(inp.streams) - 1 - len(audio_in)
        rgb = _rgb_format(info.bit_depth, plan.alpha)
        # One swscale context each way, made once: its set-up (filters, threads) costs about a frame's work.
        to_rgb, from_rgb = av.video.reformatter.VideoReformatter(), av.video.reformatter.VideoReformatter()
        frames, first_rotation = 0, 0
        try:
            with atomic_path(dst) as tmp:
                with av.open(str(tmp), "w", format=plan.muxer) as out:
                    _copy_tags(inp.metadata, out.metadata)
                    ov = _output_stream(out, plan, info, iv)
                    audio_out = {}
                    for a in audio_in:
                        audio_out[a.index] = out.add_stream_from_template(a)
                        _copy_tags(a.metadata, audio_out[a.index].metadata)
                        audio_out[a.index].disposition = a.disposition
                    done, waiting = 0.0, []  # audio held until the first frame (its rotation) is known

                    def decoded(frame, index: int, pts: int):
                        return _to_codes(to_rgb, frame, rgb), index, pts, frame.rotation

                    def graded(codes: np.ndarray, index: int, pts: int, rotation: int):
                        colour = codes[..., :3] if plan.alpha else codes
                        graded = grade(np.ascontiguousarray(colour), index)
                        if plan.alpha:
                            graded = np.concatenate([graded, codes[..., 3:]], axis=-1)
                        out_frame = _from_codes(from_rgb, graded, rgb, plan.pix_fmt, plan.tags)
                        out_frame.pts, out_frame.time_base = pts, info.time_base
                        return out_frame, rotation

                    # Three threads: decode and convert to RGB; grade and convert to the encoder's format;
                    # encode (here). Each stage's work releases the GIL. Both stages are stopped and joined on
                    # leaving the block, an error included: before ``inp`` closes.
                    with (_Ahead(_video_mapped(_decoded(src, inp, iv, info, audio_in), decoded)) as first,
                          _Ahead(_video_mapped(first, graded)) as stages):
                        for kind, item in stages:
                            if kind == "audio":
                                item.stream = audio_out[item.stream.index]
                                if frames == 0:
                                    waiting.append(item)
                                else:
                                    out.mux(item)
                                continue
                            encoded, rotation = item
                            if frames == 0:
                                first_rotation = rotation
                                if rotation:
                                    ov.set_display_rotation(rotation)
                                _mux(out, ov, ov.encode(encoded), plan)
                                for packet in waiting:
                                    out.mux(packet)
                                waiting = []
                            else:
                                _mux(out, ov, ov.encode(encoded), plan)
                            frames += 1
                            if on_progress is not None and info.frames:
                                step = min(1.0, frames / info.frames) - done
                                done += step
                                on_progress(step)
                    _mux(out, ov, ov.encode(None), plan)
                    for packet in waiting:
                        out.mux(packet)
                notes = _lost(info, inp, iv, plan, tmp, first_rotation)
        except av.FFmpegError as exc:
            raise ValueError(f"{src}: {_reason(exc)} (encoding {plan.codec} {plan.pix_fmt} into "
                             f"{dst.suffix})") from None
    return TranscodeReport(frames, time.perf_counter() - start, plan.codec, plan.pix_fmt, len(audio_in),
                           dropped, tuple(plan.notes + notes))


def _mux(out, stream, packets, plan: EncodePlan) -> None:
    for packet in packets:
        if plan.muxer == "avi":  # AVI stores a frame in the slot of its dts: no B-frames, so dts = pts
            packet.dts = packet.pts
        out.mux(packet)


@dataclass
class EncodePlan:
    """How :func:`transcode` encodes a source: the encoder, its options, pixel format and colour tags,
    the muxer, whether alpha is kept, and notes on what cannot be kept."""

    codec: str
    options: dict
    pix_fmt: str
    tags: tuple[int, int, int, int]
    muxer: str
    alpha: bool
    notes: list[str]


def check_encoder(src: str | Path, dst: str | Path, codec: str | None = None,
                  crf: int | None = None) -> EncodePlan:
    """The :class:`EncodePlan` of ``src`` into ``dst``, after encoding one blank frame of ``src``'s size
    into an in-memory file of ``dst``'s type; a one-line ValueError saying what is wrong and what would
    work when FFmpeg refuses (an odd size for a half-resolution chroma format, an encoder whose hardware
    is absent, a container that cannot hold the codec, an encoder's own limits)."""
    src, dst = Path(src), Path(dst)
    muxer = CONTAINERS.get(dst.suffix.lower())
    if muxer is None:
        raise ValueError(f"{dst}: unknown video type {dst.suffix!r} (known: {' '.join(sorted(CONTAINERS))})")
    info = probe_video(src)
    notes = []
    chosen = codec or _default_codec(info, muxer)
    options = encoder_options(chosen, crf)
    pix_fmt = _output_pix_fmt(chosen, av.VideoFormat(info.pix_fmt), info.alpha)
    alpha = info.alpha and _has_alpha(av.VideoFormat(pix_fmt))
    if info.alpha and not alpha:
        notes.append(f"alpha dropped: {chosen} has no pixel format with alpha (one that keeps it: "
                     f"{_alpha_hint(muxer)})")
    plan = EncodePlan(chosen, options, pix_fmt, _output_tags(info, pix_fmt), muxer, alpha, notes)
    _try_encoder(src, dst, info, plan)
    return plan


def _alpha_hint(muxer: str) -> str:
    hints = {"mov": "--codec prores_ks, png or qtrle", "matroska": "--codec ffv1",
             "webm": "--codec libvpx-vp9", "avi": "--codec ffv1"}
    return hints.get(muxer, "none in this container: use .mov or .mkv")


def _try_encoder(src: Path, dst: Path, info: VideoInfo, plan: EncodePlan) -> None:
    """Encode one blank frame as :func:`transcode` would, into memory; ValueError in words if it fails."""
    with _ffmpeg_errors() as logs:
        try:
            with av.open(io.BytesIO(), "w", format=plan.muxer) as out:
                stream = _output_stream(out, plan, info, None)
                frame = av.VideoFrame(info.width, info.height, plan.pix_fmt)
                frame.pts, frame.time_base = 0, info.time_base
                for packets in (stream.encode(frame), stream.encode(None)):
                    for packet in packets:
                        out.mux(packet)
        except (av.FFmpegError, ValueError) as exc:
            raise ValueError(f"{src}: {_encode_problem(dst, info, plan, exc, logs)}") from None


def _encode_problem(dst: Path, info: VideoInfo, plan: EncodePlan, exc: BaseException, logs) -> str:
    """Why ``plan.codec`` cannot write ``dst`` and what would: FFmpeg's own explanation (its last error
    line) in place of a generic "Invalid argument"."""
    codec, size = plan.codec, f"{info.width}x{info.height}"
    said = [text.strip() for level, _, text in logs if level <= av.logging.ERROR and text.strip()]
    reason = said[-1] if said else _reason(exc)
    fmt = av.VideoFormat(plan.pix_fmt)
    step_x, step_y = 1024 // fmt.chroma_width(1024), 1024 // fmt.chroma_height(1024)
    if codec.endswith(_HARDWARE):
        return (f"encoder {codec} cannot start here ({reason}): it needs hardware and drivers this machine "
                f"lacks; use a software encoder ({SOFTWARE_ENCODERS})")
    if isinstance(exc, ValueError) and "does not support" in str(exc):
        return (f"a {dst.suffix} file cannot hold {codec} video; pick another --codec (the default for "
                f"{dst.suffix} works) or another container")
    if info.width % step_x or info.height % step_y:
        return (f"the video is {size}, and {codec}'s {plan.pix_fmt} stores colour at half resolution, which "
                f"needs a width divisible by {step_x} and a height by {step_y}; use --codec ffv1 (lossless, "
                "any size), or crop the video to an even size first")
    return f"{codec} cannot encode {size} {plan.pix_fmt} into {dst.suffix} ({reason}); try another --codec"


@contextlib.contextmanager
def _ffmpeg_errors():
    """FFmpeg's error lines while the block runs, as ``[(level, name, text)]`` (not printed)."""
    level, skip = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)  # a second file's explanation is the same line as the first's
    try:
        with av.logging.Capture() as logs:
            yield logs
    finally:
        av.logging.set_level(level)
        av.logging.set_skip_repeated(skip)


def _output_stream(out, plan: EncodePlan, info: VideoInfo, source_stream) -> object:
    """The encoder's stream in ``out``: the source's size, rate, time base and sample aspect, the plan's
    pixel format and colour tags, the source stream's tags (AVI: frames stored in order, no B-frames)."""
    stream = out.add_stream(plan.codec, rate=info.rate, options=plan.options)
    stream.width, stream.height, stream.pix_fmt = info.width, info.height, plan.pix_fmt
    stream.time_base = stream.codec_context.time_base = info.time_base
    cc = stream.codec_context
    # Frame threads where the encoder has them, as the ffmpeg command does (PyAV's default is slices:
    # libx264's sliced threads took 1.3-1.4x the wall time of its frame threads on 2 cores).
    cc.thread_type = "AUTO"
    cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc = plan.tags
    if info.aspect:
        cc.sample_aspect_ratio = info.aspect
    if plan.muxer == "avi":
        cc.max_b_frames = 0
    if source_stream is not None:
        _copy_tags(source_stream.metadata, stream.metadata)
    return stream


def _copy_tags(source, target) -> None:
    for key, value in source.items():
        if key.lower() not in _OWN_TAGS and not key.lower().startswith("_statistics"):
            target[key] = value
    if "name" in source and "title" not in source:  # MP4/MOV read a track's title as "name"
        target["title"] = source["name"]


def _video_mapped(items: Iterator[tuple[str, object]], convert) -> Iterator[tuple[str, object]]:
    """``items`` in order, each ``("video", args)`` replaced by ``("video", convert(*args))``."""
    for kind, item in items:
        yield kind, (convert(*item) if kind == "video" else item)


def _decoded(path: Path, inp, iv, info: VideoInfo, audio_in) -> Iterator[tuple[str, object]]:
    """``("audio", packet)`` and ``("video", (frame, index, pts))`` in file order; ``index`` counts the
    frames from 0, ``pts`` is in the stream's time base. AVI stores no presentation time, only a slot per
    frame in decode order (empty slots are dropped frames, and FFmpeg skips them): frame k of the output
    is at the k-th slot that holds a frame."""
    avi = inp.format.name == "avi"
    decoder = _decoder(iv, info)
    slots: collections.deque[int] = collections.deque()
    index = 0
    try:
        for packet in inp.demux(iv, *audio_in):
            if packet.stream.type == "audio":
                if packet.dts is not None:  # demux ends each stream with an empty packet
                    yield "audio", packet
                continue
            if avi and packet.dts is not None and packet.size:
                slots.append(packet.dts)
            for frame in (decoder.decode(packet) if decoder is not None else packet.decode()):
                if avi and slots:
                    pts = slots.popleft()
                elif not avi and frame.pts is not None:
                    pts = frame.pts
                else:  # no timestamp at all: the frame's place at the average rate
                    pts = (iv.start_time or 0) + round(index / (info.rate * info.time_base))
                yield "video", (frame, index, pts)
                index += 1
    except av.FFmpegError as exc:
        raise ValueError(f"{path}: {_reason(exc)}") from None


def _decoder(stream, info: VideoInfo):
    """The decoder to use instead of the stream's own, or None: FFmpeg's VP9 decoder ignores the alpha
    plane that WebM stores beside each frame, libvpx's reads it."""
    if info.alpha and stream.codec_context.name == "vp9":
        decoder = av.CodecContext.create("libvpx-vp9", "r")
        decoder.thread_type = "AUTO"
        return decoder
    stream.thread_type = "AUTO"  # frame threads: decoding keeps up with encoding
    return None


def _lost(info: VideoInfo, inp, iv, plan: EncodePlan, written: Path, first_rotation: int) -> list[str]:
    """What the written file did not keep of the source (read back from it), one note each."""
    notes = []
    with av.open(str(written), "r") as out:
        ov = out.streams.video[0]
        rotation = next((f.rotation for f in out.decode(ov)), 0)
        if rotation != first_rotation:
            notes.append(f"the rotation ({first_rotation} degrees) could not be stored in {plan.muxer}")
        aspect = ov.sample_aspect_ratio
        if info.aspect and aspect != info.aspect:
            sar = f"{info.aspect.numerator}:{info.aspect.denominator}"
            notes.append(f"the sample aspect ratio {sar} could not be stored with {plan.codec} in "
                         f"{plan.muxer}: players will show the {info.width}x{info.height} pixels as square")
        sources = [iv.metadata] + [a.metadata for a in inp.streams.audio]
        targets = [ov.metadata] + [a.metadata for a in out.streams.audio]
        missing = sorted({key for s, t in zip(sources, targets, strict=False) for key in ("language", "title")
                          if s.get(key, "und") != "und" and t.get(key) != s.get(key)})
        if missing:
            notes.append(f"the streams' {' and '.join(missing)} tags could not be stored in {plan.muxer}")
    return notes


class _Ahead:
    """The items of ``items``, produced by a background thread up to ``depth`` ahead of the consumer:
    decoding, converting and grading the next frames overlaps encoding this one (FFmpeg's calls and the
    compiled LUT loop release the GIL; measured 1.2x the frames/s of one thread on 2 cores). The
    producer's exception is raised by ``next``. :meth:`close` (also on leaving a ``with`` block) stops the
    producer after its current item and waits for it: call it before closing what the producer reads
    (a thread still decoding from a closed container crashes the process)."""

    def __init__(self, items: Iterator, depth: int = 4):
        self._items, self._slots = items, queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="lutkern-video-stage", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put((True, item)):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put((False, exc))
            return
        self._put((False, None))

    def __iter__(self) -> _Ahead:
        return self

    def __next__(self):
        while True:
            try:
                more, value = self._slots.get(timeout=0.1)
                break
            except queue.Empty:
                if self._stop.is_set():
                    raise StopIteration from None
        if not more:
            self._stop.set()
            if value is not None:
                raise value
            raise StopIteration
        return value

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        close = getattr(self._items, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> _Ahead:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
    (:func:`lutkern.grading.grade_codes`: clamped and rounded to the source's codes; 8-bit frames past the
    first 16.7 M pixels looked up in a table of every code, :class:`lutkern.grading.CodesGrader`)."""
    grader = CodesGrader(lut, interpolation=interpolation, device=device, backend=backend)
    return transcode(src, dst, lambda codes, index: grader(codes), codec=codec, crf=crf,
                     on_progress=on_progress)


def encoder_options(codec: str, crf: int | None = None) -> dict[str, str]:
    """The options :func:`transcode` gives encoder ``codec``; a ValueError when this FFmpeg has no such
    video encoder, ``crf`` is given to one without a CRF setting, or the encoder cannot start on this
    machine (a hardware encoder whose device is absent): checked before any work."""
    _require_av()
    try:
        ctx = av.CodecContext.create(codec, "w")
    except (av.FFmpegError, ValueError):
        raise ValueError(f"no video encoder {codec!r} in this FFmpeg (e.g. {SOFTWARE_ENCODERS})") from None
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
    if codec.endswith(_HARDWARE):
        _open_encoder(ctx, codec, options)
    return options


def _open_encoder(ctx, codec: str, options: dict) -> None:
    """Open ``ctx`` at a common size (1280x720, 25 frames/s): a hardware encoder fails here, at once,
    when its device is absent."""
    formats = [f for f in av.Codec(codec, "w").video_formats or () if _usable(f, alpha=False)]
    ctx.width, ctx.height, ctx.time_base, ctx.framerate = 1280, 720, Fraction(1, 25), Fraction(25)
    if formats:
        ctx.pix_fmt = formats[0].name
    ctx.options = dict(options)
    with _ffmpeg_errors() as logs:
        try:
            ctx.open()
        except (av.FFmpegError, ValueError) as exc:
            said = [text.strip() for level, _, text in logs if level <= av.logging.ERROR and text.strip()]
            reason = said[-1] if said else _reason(exc)
            raise ValueError(f"encoder {codec} cannot start here ({reason}): it needs hardware and drivers "
                             f"this machine lacks; use a software encoder ({SOFTWARE_ENCODERS})") from None


def _default_codec(info: VideoInfo, muxer: str) -> str:
    """libx264 (8-bit) or libx265 (deeper); libvpx-vp9 into WebM (VP8/VP9/AV1 only; this libvpx is 8-bit);
    for a source with alpha, its own format's encoder where it keeps alpha in this container."""
    if info.alpha:
        keeper = _ALPHA_ENCODERS.get(info.codec)
        if keeper in av.codecs_available and _container_takes(muxer, keeper):
            return keeper
    if muxer == "webm":
        return "libvpx-vp9"
    return "libx264" if info.bit_depth <= 8 else "libx265"


def _container_takes(muxer: str, codec: str) -> bool:
    with av.open(io.BytesIO(), "w", format=muxer) as out:
        return codec in out.supported_codecs


def _open_input(path: Path):
    _require_av()
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():  # a FIFO or a device would block FFmpeg's probe
        raise ValueError(f"{path}: not a regular file")
    why = cut_short(path)
    if why:
        raise ValueError(f"{path}: cut short ({why}): a copy or download that did not finish? Its frames "
                         "are not graded, to give no video that silently ends early")
    try:
        return av.open(str(path), "r")
    except av.FFmpegError as exc:
        raise ValueError(f"{path}: not a video file FFmpeg can read ({_reason(exc)})") from None


_MAX_BOXES = 1 << 20  # top-level boxes or chunks read before giving up looking (a bound for odd files)


def cut_short(path: str | Path) -> str | None:
    """Why the file at ``path`` ends before its own container says it does, in words, or None (also for
    types without such a measure). Read from the first bytes, before FFmpeg sees the file: ISO media
    (MP4, MOV): a top-level box runs past the end; Matroska/WebM: the segment's size; AVI: a RIFF
    chunk's."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        f.seek(0)
        if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
            return _boxes_past_end(f, size)
        if head[:4] == b"\x1a\x45\xdf\xa3":
            return _segment_past_end(f, size)
        if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
            return _riff_past_end(f, size)
    return None


def _boxes_past_end(f, size: int) -> str | None:
    pos = 0
    for _ in range(_MAX_BOXES):
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return None
        length, kind = int.from_bytes(head[:4], "big"), head[4:]
        if not all(32 <= b < 127 for b in kind):
            return None  # not a box: data after the last one is not ours to judge
        if length == 1:
            large = f.read(8)
            if len(large) < 8:
                return f"the file ends inside the header of its '{kind.decode()}' box"
            length = int.from_bytes(large, "big")
        elif length == 0:
            return None  # the last box, up to the end of the file
        if length < 8:
            return None
        if pos + length > size:
            return (f"its '{kind.decode()}' box needs {pos + length} bytes, the file has {size}")
        pos += length
    return None


def _ebml_number(f) -> tuple[int, bool] | None:
    """An EBML variable-size number at ``f``'s position: ``(value, every value bit set)``, or None."""
    first = f.read(1)
    if not first or first[0] == 0:
        return None
    width = 8 - first[0].bit_length() + 1
    rest = f.read(width - 1)
    if len(rest) < width - 1:
        return None
    value = first[0] & ((1 << (8 - width)) - 1)
    for byte in rest:
        value = value << 8 | byte
    return value, value == (1 << (7 * width)) - 1


def _segment_past_end(f, size: int) -> str | None:
    """Matroska: the EBML header element, then the Segment, whose size says where the file ends."""
    if f.read(4) != b"\x1a\x45\xdf\xa3":
        return None
    header = _ebml_number(f)
    if header is None:
        return None
    f.seek(f.tell() + header[0])
    if f.read(4) != b"\x18\x53\x80\x67":
        return None
    segment = _ebml_number(f)
    if segment is None or segment[1]:  # unknown size: written live, no promise to check
        return None
    end = f.tell() + segment[0]
    return f"its segment needs {end} bytes, the file has {size}" if end > size else None


def _riff_past_end(f, size: int) -> str | None:
    """AVI: RIFF chunks one after another (AVI, then AVIX for files beyond 1 GB)."""
    pos = 0
    for _ in range(_MAX_BOXES):
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8 or head[:4] != b"RIFF":
            return None
        end = pos + 8 + int.from_bytes(head[4:], "little")
        if end > size:
            return f"its RIFF chunk needs {end} bytes, the file has {size}"
        pos = end + (end & 1)
    return None


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
    pix_fmt = fmt.name
    if cc.name == "vp9" and stream.metadata.get("alpha_mode") == "1" and not _has_alpha(fmt):
        pix_fmt = "yuva" + pix_fmt[3:]  # stored beside each frame; libvpx decodes it (see _decoder)
    aspect = stream.sample_aspect_ratio
    return VideoInfo(
        width=stream.width,
        height=stream.height,
        frames=_frame_count(container, stream, rate),
        rate=Fraction(rate),
        time_base=Fraction(stream.time_base),
        bit_depth=_bit_depth(fmt),
        pix_fmt=pix_fmt,
        codec=cc.name,
        audio_streams=len(container.streams.audio),
        color_range=int(cc.color_range),
        colorspace=int(cc.colorspace),
        color_primaries=int(cc.color_primaries),
        color_trc=int(cc.color_trc),
        alpha=_has_alpha(av.VideoFormat(pix_fmt)),
        aspect=Fraction(aspect) if aspect and aspect != 1 else None,
    )


def _frame_count(container, stream, rate: Fraction) -> int:
    if container.format.name == "avi" and stream.index_entries:  # its slots, less the empty (dropped) ones
        return sum(1 for entry in stream.index_entries if entry.size)
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


def _has_alpha(fmt) -> bool:
    return any(c.is_alpha for c in fmt.components)


def _rgb_format(bit_depth: int, alpha: bool) -> str:
    if alpha:
        return "rgba" if bit_depth <= 8 else "rgba64le"
    return "rgb24" if bit_depth <= 8 else "rgb48le"


def _decode_errors(path: Path, frames):
    try:
        yield from frames
    except av.FFmpegError as exc:
        raise ValueError(f"{path}: {_reason(exc)}") from None


def _sws_flags(to_rgb: bool) -> int:
    flags = av.video.reformatter.Interpolation
    # Accurate rounding: without it an identity round trip is off by a code in Y, on average.
    chroma = flags.FULL_CHR_H_INT if to_rgb else flags.FULL_CHR_H_INP
    return flags.BICUBIC | flags.ACCURATE_RND | chroma


def _to_codes(reformatter, frame, rgb: str) -> np.ndarray:
    """``frame`` as RGB(A) codes: its own colorspace and range tags drive the conversion (swscale reads
    them from the frame)."""
    return reformatter.reformat(frame, format=rgb, interpolation=_sws_flags(to_rgb=True)).to_ndarray()


def _from_codes(reformatter, codes: np.ndarray, rgb: str, pix_fmt: str, tags):
    """RGB(A) ``codes`` as a frame of ``pix_fmt`` with the colour ``tags`` (see :func:`_output_tags`)."""
    color_range, colorspace, _, _ = tags
    frame = av.VideoFrame.from_ndarray(codes, format=rgb)
    frame.colorspace = colorspace  # the target matrix: reformat's default is the source frame's
    out = reformatter.reformat(frame, format=pix_fmt, dst_color_range=color_range or None,
                               interpolation=_sws_flags(to_rgb=False))
    # swscale names equivalent matrices its own way (BT.470BG as SMPTE 170M): the stream's tags win.
    out.color_range, out.colorspace, out.color_primaries, out.color_trc = tags
    return out


def _usable(fmt, alpha: bool) -> bool:
    """An output pixel format: three colour components (and an alpha one when ``alpha``), integer,
    little-endian, not the deprecated full-range ``yuvj*`` (the range is a tag)."""
    return (
        len(fmt.components) == (4 if alpha else 3)
        and _has_alpha(fmt) == alpha
        and not (fmt.has_palette or fmt.is_bayer or fmt.is_bit_stream or fmt.is_big_endian)
        and not fmt.name.startswith("yuvj")
        and "f16" not in fmt.name
        and "f32" not in fmt.name
    )


def _output_pix_fmt(codec: str, src, alpha: bool = False) -> str:
    """The pixel format of ``codec`` nearest the source format ``src``: alpha kept when ``alpha`` and the
    encoder has a format with it, RGB stays RGB, then the same chroma subsampling, then at least the
    source's bit depth, then the nearest depth; ties go to the encoder's own order (its preferred formats
    first)."""
    offered = av.Codec(codec, "w").video_formats or ()
    formats = [f for f in offered if _usable(f, alpha=False) or (alpha and _usable(f, alpha=True))]
    if not formats:
        raise ValueError(f"encoder {codec} takes no 3-component integer pixel format")
    depth = _bit_depth(src)

    def chroma(fmt) -> tuple[int, int]:
        return fmt.chroma_width(1024), fmt.chroma_height(1024)

    def key(fmt):
        d = _bit_depth(fmt)
        return (_has_alpha(fmt), fmt.is_rgb == src.is_rgb, chroma(fmt) == chroma(src), d >= depth,
                -abs(d - depth))

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
