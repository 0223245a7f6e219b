"""Video probing and frame sampling on top of OpenCV's FFmpeg backend.

Imported lazily by the commands that analyse videos: it imports cv2 at module level.

A video that cannot be analysed raises :class:`VideoError` carrying a stable reason code, so the
orchestrator can quarantine it with a machine-readable reason and move on to the next file.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Final

import cv2
import numpy as np
from numpy.typing import NDArray

from vvctl.core.errors import InputError
from vvctl.core.names import display, is_text

VIDEO_ERROR_REASONS: Final = frozenset(
    {
        "empty_file",
        "unreadable",
        "not_a_video",
        "unsupported_codec",
        "no_frames",
        "corrupt_stream",
        "truncated",
    }
)

SHORTFALL_RATIO: Final = 0.05
SHORTFALL_MIN_S: Final = 2.0
"""A stream whose decoding stops more than ``max(SHORTFALL_RATIO * length, SHORTFALL_MIN_S)`` before its
reported end is cut off or damaged; a smaller shortfall is normal.

The reported frame count is not trusted to the frame: containers routinely over-report by a few frames
(edit lists, B-frame delay: one test clip reports 467 frames and decodes 459, 0.7 s short). Both the
frame count and the time axis must fall short, so a variable-frame-rate stream that decodes fewer
frames than its nominal rate implies, but reaches its end, is complete.
"""

UNDECODABLE_CODECS: Final = frozenset({"av01"})
"""Codec tags (lowercase FourCC) the demuxer accepts but the bundled FFmpeg cannot decode in software: its
native AV1 decoder only drives hardware decoders, so every frame fails. Such a file is ``unsupported_codec``,
not ``no_frames`` (nothing is wrong with the file)."""

MAX_SANE_FPS: Final = 1000.0
"""Above this the "frame rate" is almost always a time base misread as a rate (90000, 1e6)."""

_HEAD_BYTES: Final = 4096
# Sampling compares timestamps with multiples of the interval; timestamps derived from integer PTS
# can land a hair below the exact multiple, which would push the sample one frame late.
_TIME_EPSILON_S: Final = 1e-6
_PUT_POLL_S: Final = 0.1
_GET_POLL_S: Final = 0.5
_CLOSE_TIMEOUT_S: Final = 5.0


class VideoError(InputError):
    """A video that cannot be analysed; ``reason`` is one of :data:`VIDEO_ERROR_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in VIDEO_ERROR_REASONS:
            raise ValueError(f"unknown video error reason {reason!r}")
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    """What the container and decoder say about a video, before it is decoded in full."""

    path: Path
    codec: str
    """FourCC text as OpenCV reports it (e.g. ``MP43``; ``h264`` or ``avc1`` depending on the build)."""
    width: int
    height: int
    fps: float
    reported_frames: int
    """``CAP_PROP_FRAME_COUNT``, 0 when unknown. Not trusted: the real count is known after decoding."""
    duration_s: float | None
    """``reported_frames / fps``; None when the frame count is unknown."""
    size: int
    """File size in bytes."""
    container: str | None = None
    """Container recognised from its magic bytes (``MP4/MOV``, ``AVI``, ...), None when not recognised."""
    structure_complete: bool | None = None
    """True when the container's own structure (MP4 boxes, AVI RIFF chunks) shows the whole file is
    present, None when it cannot tell. A file whose structure shows it is cut off fails :func:`probe`."""

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"video size must be positive, got {self.width}x{self.height}")
        if not (math.isfinite(self.fps) and 0 < self.fps <= MAX_SANE_FPS):
            raise ValueError(f"fps must be in (0, {MAX_SANE_FPS}], got {self.fps}")
        if self.reported_frames < 0 or self.size < 0:
            raise ValueError("reported_frames and size must not be negative")
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s >= 0):
            raise ValueError(f"duration_s must be a finite non-negative number, got {self.duration_s}")


@dataclass(frozen=True, eq=False)
class SampledFrame:
    """One decoded frame. ``eq=False``: comparing pixel arrays with ``==`` is never what is meant."""

    index: int
    """Position in the stream, counted by decoding (0-based), not by seeking."""
    time_s: float
    """Presentation time: the decoder's PTS while it is sane, else extrapolated with the frame rate."""
    image: NDArray[np.uint8]
    """BGR, HxWx3, as OpenCV decodes it."""


def probe(path: Path) -> VideoInfo:
    """Open ``path``, read its stream properties and decode its first frame.

    Raises :class:`VideoError` when the file is empty, unreadable, not a video, uses a codec this
    OpenCV build cannot decode, has no decodable frame, or is cut off before its index.
    """
    size, head, structure_complete = _read_head(path)
    container = _container_name(head)
    if container is None and not _elementary_stream(head):
        # FFmpeg's probing "opens" nearly anything: a PNG (image2 demuxer), or about 1 in 100 random files
        # as a one-frame H.263 stream. A video must show it is one: a container or stream signature.
        raise VideoError(
            "not_a_video", f"{_shown(path)}: not a video file: no video container or stream signature ({size} bytes)"
        )
    cap = _open_capture(path)
    try:
        if not cap.isOpened():
            raise _open_failure(path, size, head)
        width = _int_prop(cap, cv2.CAP_PROP_FRAME_WIDTH)
        height = _int_prop(cap, cv2.CAP_PROP_FRAME_HEIGHT)
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        reported = max(0, _int_prop(cap, cv2.CAP_PROP_FRAME_COUNT))
        codec = _fourcc_text(cap.get(cv2.CAP_PROP_FOURCC))
        if width <= 0 or height <= 0:
            # FFmpeg's format probing will "open" arbitrary bytes as some raw elementary stream; a
            # stream without a picture size is that, or a container whose video header is damaged.
            if container is None:
                raise VideoError("not_a_video", f"{_shown(path)}: not a video (no picture size found)")
            raise VideoError("corrupt_stream", f"{_shown(path)}: {container} video stream has no picture size")
        if not (math.isfinite(fps) and 0 < fps <= MAX_SANE_FPS):
            raise VideoError("corrupt_stream", f"{_shown(path)}: unusable frame rate {fps!r}")
        if not cap.grab():
            if codec.lower() in UNDECODABLE_CODECS:
                raise VideoError(
                    "unsupported_codec",
                    f"{_shown(path)}: {container or 'the'} file holds {codec} video, which this OpenCV/FFmpeg build "
                    "cannot decode (its AV1 decoder needs hardware support)",
                )
            raise VideoError("no_frames", f"{_shown(path)}: {codec or 'video'} stream opens but no frame decodes")
        ok, image = cap.retrieve()
        if not ok or image is None:
            raise VideoError("corrupt_stream", f"{_shown(path)}: the first frame cannot be decoded")
    except cv2.error as exc:
        raise VideoError("corrupt_stream", f"{_shown(path)}: decoder error: {_first_line(exc)}") from exc
    finally:
        cap.release()
    return VideoInfo(
        path=path,
        codec=codec,
        width=width,
        height=height,
        fps=fps,
        reported_frames=reported,
        duration_s=reported / fps if reported > 0 else None,
        size=size,
        container=container,
        structure_complete=structure_complete,
    )


@dataclass(frozen=True)
class _End:
    """End-of-stream marker; carries the producer's exception, if any, to the consumer."""

    error: BaseException | None


class FrameSampler:
    """Decode a video in a background thread and yield one frame every ``interval_s`` of video.

    Every frame is ``grab()``-bed (decoded) to keep the count and timestamps exact, but only sampled
    frames are ``retrieve()``-d, which is where OpenCV converts to BGR: skipped frames cost no colour
    conversion or copy. The producer feeds a bounded queue, so decoding runs ahead of inference by at
    most ``queue_size`` frames.

    Use it as a context manager so that leaving early (``break``, an exception in the consumer) stops
    the decoder thread at once::

        with FrameSampler(path, 1.0) as sampler:
            for frame in sampler:
                ...
        sampler.frames_read, sampler.duration_s

    After a complete iteration, a stream that yields no frame, or stops decoding well before its
    reported end (see :data:`SHORTFALL_RATIO`), raises :class:`VideoError`: ``truncated``, or
    ``corrupt_stream`` when the container shows the whole file is present.
    """

    def __init__(
        self,
        path: Path,
        interval_s: float,
        *,
        queue_size: int = 8,
        info: VideoInfo | None = None,
    ) -> None:
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ValueError(f"interval_s must be a positive number of seconds, got {interval_s!r}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.path = path
        self.interval_s = interval_s
        self.info = info if info is not None else probe(path)
        self.frames_read = 0
        self.frames_sampled = 0
        self.duration_s = 0.0
        self._queue: queue.Queue[SampledFrame | _End] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FrameSampler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[SampledFrame]:
        if self._thread is not None:
            raise RuntimeError("a FrameSampler can be iterated only once")
        name = f"vvctl-frame-sampler:{_shown(self.path)}"
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()
        return self._consume()

    def close(self) -> None:
        """Stop the decoder thread (also mid-stream) and drop frames still queued."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # The producer may be blocked on a full queue: keep draining until it notices the stop.
            for _ in range(int(_CLOSE_TIMEOUT_S / 0.05)):
                self._drain()
                thread.join(timeout=0.05)
                if not thread.is_alive():
                    break
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _consume(self) -> Iterator[SampledFrame]:
        try:
            while True:
                try:
                    item = self._queue.get(timeout=_GET_POLL_S)
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    if self._thread is not None and not self._thread.is_alive() and self._queue.empty():
                        # The producer always sends _End from a finally; this only guards against a
                        # thread killed from outside, so the consumer can never hang.
                        raise VideoError(
                            "corrupt_stream", f"{_shown(self.path)}: the decoder stopped without finishing"
                        ) from None
                    continue
                if isinstance(item, _End):
                    if item.error is None:
                        return
                    converted = self._as_video_error(item.error)
                    if converted is item.error:
                        raise converted
                    raise converted from item.error
                yield item
        finally:
            self.close()

    def _as_video_error(self, error: BaseException) -> BaseException:
        if isinstance(error, VideoError):
            return error
        if isinstance(error, MemoryError) or not isinstance(error, Exception):
            return error
        return VideoError(
            "corrupt_stream",
            f"{_shown(self.path)}: decoding failed after {self.frames_read} frames: {_first_line(error)}",
        )

    def _produce(self) -> None:
        error: BaseException | None = None
        try:
            self._decode()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            error = exc
        finally:
            self._put_end(_End(error))

    def _decode(self) -> None:
        info = self.info
        fps = info.fps
        cap = _open_capture(self.path)
        index = 0
        time_s = 0.0
        try:
            if not cap.isOpened():
                raise VideoError("unreadable", f"{_shown(self.path)}: cannot be reopened for decoding")
            use_pts = True
            base_time, base_index = 0.0, 0
            next_sample = 0
            while not self._stop.is_set():
                if not cap.grab():
                    break
                pts = float(cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0 if use_pts else math.nan
                if math.isfinite(pts) and pts >= 0 and (index == 0 or pts > time_s):
                    time_s = pts
                    base_time, base_index = pts, index
                else:
                    # Missing or non-monotonic PTS: continue from the last good one at the nominal
                    # rate, and stop trusting PTS for this stream so timestamps stay monotonic.
                    use_pts = False
                    time_s = base_time + (index - base_index) / fps
                self.frames_read = index + 1
                if time_s + _TIME_EPSILON_S >= next_sample * self.interval_s:
                    ok, image = cap.retrieve()
                    if not ok or image is None:
                        raise VideoError("corrupt_stream", f"{_shown(self.path)}: frame {index} cannot be decoded")
                    if not self._put(SampledFrame(index=index, time_s=time_s, image=image)):
                        return
                    self.frames_sampled += 1
                    next_sample = int((time_s + _TIME_EPSILON_S) // self.interval_s) + 1
                index += 1
        finally:
            cap.release()
        if self._stop.is_set():
            return
        nominal = index / fps
        # With PTS timestamps the last frame can sit later than index / fps (variable frame rate).
        self.duration_s = nominal if index == 0 or time_s < nominal else time_s + 1.0 / fps
        self._check_complete(index)

    def _check_complete(self, frames_read: int) -> None:
        name = _shown(self.path)
        if frames_read == 0:
            raise VideoError("no_frames", f"{name}: no frame decodes")
        info = self.info
        reported = info.reported_frames
        if reported == 0:
            return
        expected_s = reported / info.fps
        tolerance_s = max(SHORTFALL_RATIO * expected_s, SHORTFALL_MIN_S)
        if reported - frames_read <= tolerance_s * info.fps or expected_s - self.duration_s <= tolerance_s:
            return
        where = (
            f"decoding stops after {frames_read} of {reported} reported frames "
            f"({self.duration_s:.1f} s of {expected_s:.1f} s)"
        )
        if info.structure_complete:
            raise VideoError(
                "corrupt_stream", f"{name}: {where} although the whole file is present: the stream is damaged"
            )
        raise VideoError("truncated", f"{name}: {where}: the file is cut off or damaged")

    def _put(self, item: SampledFrame) -> bool:
        """Queue a frame, waking up regularly to notice close(); False once stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_PUT_POLL_S)
            except queue.Full:
                continue
            return True
        return False

    def _put_end(self, end: _End) -> None:
        while True:
            try:
                self._queue.put(end, timeout=_PUT_POLL_S)
            except queue.Full:
                if self._stop.is_set():
                    # Nobody reads frames any more: drop one so the marker always gets through.
                    with contextlib.suppress(queue.Empty):
                        self._queue.get_nowait()
                continue
            return


def _read_head(path: Path) -> tuple[int, bytes, bool | None]:
    """File size, first bytes, and whether the container structure shows the whole file is present.

    A cut-off MP4 or AVI is recognised here, before FFmpeg, because FFmpeg's messages for it ("moov
    atom not found", a short read) never reach us through OpenCV, and FFmpeg happily decodes the part
    that is there.
    """
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(_HEAD_BYTES)
            container = _container_name(head)
            complete: bool | None = None
            if container == "MP4/MOV":
                layout = _bmff_layout(fh, size)
                if layout == "no_index":
                    raise VideoError(
                        "truncated",
                        f"{_shown(path)}: MP4/MOV file has no index (moov box): the recording was cut off "
                        "or is still being written",
                    )
                complete = _layout_complete(layout)
            elif container == "AVI":
                complete = _layout_complete(_riff_layout(fh, size))
            if complete is False:
                raise VideoError(
                    "truncated",
                    f"{_shown(path)}: {container} file is cut off: its structure declares more data than the "
                    f"{size} bytes present",
                )
    except IsADirectoryError as exc:
        raise VideoError("unreadable", f"{_shown(path)}: is a directory, not a file") from exc
    except OSError as exc:
        raise VideoError("unreadable", f"{display(str(path))}: cannot read: {exc.strerror or exc}") from exc
    if size == 0:
        raise VideoError("empty_file", f"{_shown(path)}: empty file (0 bytes)")
    return size, head, complete


def _shown(path: Path) -> str:
    return display(path.name)


def _elementary_stream(head: bytes) -> bool:
    """A raw video stream without a container: a start code at the very first byte.

    H.264/H.265 Annex B and MPEG-1/2/4 video begin with ``00 00 01`` (or ``00 00 00 01``), H.263 with its
    22-bit picture start code. Random bytes begin so by chance about once in 4 million files, not in 100.
    """
    return head.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")) or (
        len(head) >= 3 and head[0] == 0 and head[1] == 0 and (head[2] & 0xFC) == 0x80
    )


def _container_name(head: bytes) -> str | None:
    """Name the container from its magic bytes, or None when nothing is recognised."""
    if len(head) >= 8 and head[4:8] in {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid"}:
        return "MP4/MOV"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "MPEG-TS"
    if len(head) > 196 and head[4] == 0x47 and head[196] == 0x47:
        return "MPEG-TS"  # M2TS / BDAV: 192-byte packets with a 4-byte time code
    if head[:4] == b"DKIF":
        return "IVF"
    if head[:9] == b"YUV4MPEG2":
        return "Y4M"
    if head[:4] == b"OggS":
        return "Ogg"
    if head[:4] == b".RMF":
        return "RealMedia"
    if head[:4] == b"\x00\x00\x01\xba":
        return "MPEG-PS"
    if head[:3] == b"FLV":
        return "FLV"
    if head[:4] == b"\x30\x26\xb2\x75":
        return "ASF/WMV"
    return None


def _layout_complete(layout: str) -> bool | None:
    return {"complete": True, "cut": False}.get(layout)


def _is_fourcc(tag: bytes) -> bool:
    return len(tag) == 4 and all(0x20 <= b < 0x7F for b in tag)


def _bmff_layout(fh: BinaryIO, size: int) -> str:
    """Walk the top-level boxes of an MP4/MOV file.

    ``complete``: every box ends within the file, and a ``moov`` and media data (``mdat``) are
    present; ``cut``: a box runs past the end of the file, or the file ends before any media data
    (cut just after a leading index); ``no_index``: the boxes end without a ``moov``; ``unknown``: a
    box header that is not one (zero padding from a pre-allocating recorder, garbage) after the
    ``moov``.
    """
    pos = 0
    seen_index = seen_media = False
    while pos < size:
        fh.seek(pos)
        header = fh.read(16)
        if len(header) < 8:
            return "cut" if seen_index else "no_index"
        short_size, box_type = struct.unpack(">I4s", header[:8])
        box_size = int(short_size)
        if box_size == 1:
            if len(header) < 16:
                return "cut" if seen_index else "no_index"
            box_size = int(struct.unpack(">Q", header[8:16])[0])
        elif box_size == 0:
            box_size = size - pos
        if box_size < 8 or not _is_fourcc(box_type):
            return "unknown" if seen_index else "no_index"
        if pos + box_size > size:
            return "cut" if seen_index or box_type != b"moov" else "no_index"
        seen_index = seen_index or box_type == b"moov"
        seen_media = seen_media or box_type == b"mdat"
        pos += box_size
    if not seen_index:
        return "no_index"
    return "complete" if seen_media else "cut"


_RIFF_SIZE_PLACEHOLDERS: Final = frozenset({0, 0xFFFFFFFF})


def _riff_layout(fh: BinaryIO, size: int) -> str:
    """Walk the ``RIFF`` chunks of an AVI file (OpenDML files chain ``AVI `` and ``AVIX`` chunks).

    ``complete``: every chunk ends within the file; ``cut``: one runs past its end; ``unknown``: a
    writer that never finalised its sizes (placeholder 0 or 0xFFFFFFFF), or data that is not a chunk.
    """
    pos = 0
    while pos + 12 <= size:
        fh.seek(pos)
        tag, chunk_size, _form = struct.unpack("<4sI4s", fh.read(12))
        if tag != b"RIFF" or chunk_size in _RIFF_SIZE_PLACEHOLDERS:
            return "unknown"
        if pos + 8 + chunk_size > size:
            return "cut"
        pos += 8 + chunk_size + (chunk_size & 1)
    return "complete" if pos > 0 else "cut"


def _open_failure(path: Path, size: int, head: bytes) -> VideoError:
    container = _container_name(head)
    if container is None:
        return VideoError("not_a_video", f"{_shown(path)}: not a video file this build can read ({size} bytes)")
    return VideoError(
        "unsupported_codec",
        f"{_shown(path)}: {container} file, but no decodable video stream (codec unsupported by this "
        "OpenCV/FFmpeg build, no video track, or a damaged header)",
    )


_logs_quieted = False
_logs_lock = threading.Lock()


def _quiet_decoder_logs() -> None:
    """Keep OpenCV's and FFmpeg's own stderr chatter out of cron mail and JSON logs.

    Every failure they would print is turned into a VideoError with a reason code. Settings already
    present in the environment win, so ``OPENCV_LOG_LEVEL`` / ``OPENCV_FFMPEG_LOGLEVEL`` still work
    for debugging. FFmpeg's level is read when OpenCV first initialises FFmpeg, hence before the first
    VideoCapture.
    """
    global _logs_quieted
    with _logs_lock:
        if _logs_quieted:
            return
        _logs_quieted = True
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
        if "OPENCV_LOG_LEVEL" not in os.environ:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def open_capture(path: Path) -> Any:
    """An OpenCV capture of ``path`` through FFmpeg, whatever its name (see :func:`_open_capture`)."""
    return _open_capture(path)


def _open_capture(path: Path) -> Any:
    _quiet_decoder_logs()
    # Ask for FFmpeg explicitly: CAP_ANY would also try the image-sequence backend, which reads
    # "%d"-style names as patterns.
    api = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
    if is_text(str(path)):
        return cv2.VideoCapture(str(path), api)
    # OpenCV takes a file name as UTF-8 text: a name that is not UTF-8 cannot be given to it (and crashes
    # its conversion). FFmpeg opens the file through our descriptor instead, by its /proc name.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return cv2.VideoCapture()  # not opened: reported like any file FFmpeg cannot open
    try:
        return cv2.VideoCapture(f"/proc/self/fd/{fd}", api)
    finally:
        os.close(fd)


def _int_prop(cap: Any, prop: int) -> int:
    value = float(cap.get(prop))
    return round(value) if math.isfinite(value) else 0


def _fourcc_text(value: float) -> str:
    code = int(value) if math.isfinite(value) else 0
    chars = (chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in chars).strip("\x00 ?")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(exc).__name__
