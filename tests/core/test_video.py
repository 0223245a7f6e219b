"""Frame sampling and probing on the clips the repository ships (tests/data and the bundled sample), and on
them damaged in known ways. The same on the four full recordings: test_video_shared.py (extras)."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from tests.conftest import SAMPLE, TESTDATA
from vvctl.core.errors import ExitCode, InputError
from vvctl.core.video import FrameSampler, SampledFrame, VideoError, VideoInfo, probe

PATHS = {"people.avi": TESTDATA / "people.avi", "cars.mp4": TESTDATA / "cars.mp4", "walkway.mp4": SAMPLE}
# Measured by decoding to EOF: codec as OpenCV reports it, size, fps, reported and decodable frame
# counts, and the frames a 1 s sampling yields (the first frame at or after each whole second).
CLIPS = {
    "people.avi": ("MP43", 320, 240, 10.0, 45, 45, 5),  # MS-MPEG4 v3 in AVI, the legacy codec of vtest.avi
    "cars.mp4": ("FMP4", 320, 180, 12.5, 63, 63, 5),  # MPEG-4 Part 2 in MP4, at a fractional frame rate
    "walkway.mp4": ("FMP4", 768, 576, 10.0, 100, 100, 10),  # the bundled sample, index at the end
}
# A decoding that hangs must fail the test, not the suite.
NO_HANG_S = 30.0


def sample_all(path: Path, interval_s: float = 1.0, **kwargs: int) -> tuple[FrameSampler, list[SampledFrame]]:
    with FrameSampler(path, interval_s, **kwargs) as sampler:
        frames = list(sampler)
    return sampler, frames


def run_with_timeout(func: Callable[[], object]) -> BaseException | None:
    """Run ``func`` in a thread; fail the test if it does not finish in time, else return what it raised."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            func()
        except BaseException as exc:  # handed back to the test
            raised.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(NO_HANG_S)
    assert not thread.is_alive(), f"still running after {NO_HANG_S} s: the consumer hangs"
    return raised[0] if raised else None


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vvctl-frame-sampler:") and t.is_alive()]


def wait_for_no_sampler_threads(timeout_s: float = 5.0) -> list[threading.Thread]:
    deadline = time.monotonic() + timeout_s
    while sampler_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return sampler_threads()


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    yield
    assert wait_for_no_sampler_threads() == [], "a FrameSampler thread outlived its test"


@pytest.fixture(scope="session")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """Write a shipped clip damaged in a named way; each variant is written once per session."""
    root = tmp_path_factory.mktemp("damaged")
    made: dict[tuple[str, str], Path] = {}

    def make(clip: str, how: str) -> Path:
        if (clip, how) in made:
            return made[clip, how]
        data = bytearray(PATHS[clip].read_bytes())
        if how == "truncated30":
            data = data[: int(len(data) * 0.3)]
        elif how == "mid_zeroed":
            # Ten per cent of the file, from its middle on, overwritten with zeros: a damaged disk
            # sector run or a botched copy. The container structure stays intact.
            start = len(data) // 2
            data[start : start + len(data) // 10] = bytes(len(data) // 10)
        else:
            raise ValueError(how)
        path = root / f"{how}-{clip}"
        path.write_bytes(bytes(data))
        made[clip, how] = path
        return path

    return make


@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_probe_reads_stream_properties(clip: str) -> None:
    codec, width, height, fps, reported, _, _ = CLIPS[clip]
    info = probe(PATHS[clip])
    assert (info.codec, info.width, info.height, info.reported_frames) == (codec, width, height, reported)
    assert info.fps == pytest.approx(fps)
    assert info.duration_s == pytest.approx(reported / fps)
    assert info.size == PATHS[clip].stat().st_size
    assert info.container == ("AVI" if clip.endswith(".avi") else "MP4/MOV")
    assert info.structure_complete is True


@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_sampling_counts_and_timestamps(clip: str) -> None:
    _, _, _, fps, _, decodable, sampled = CLIPS[clip]
    sampler, frames = sample_all(PATHS[clip])
    assert sampler.frames_read == decodable
    assert sampler.frames_sampled == len(frames) == sampled
    assert sampler.duration_s == pytest.approx(decodable / fps)
    assert [f.index for f in frames] == sorted({f.index for f in frames})
    for k, frame in enumerate(frames):
        # These clips have a constant frame rate: PTS == index / fps.
        assert frame.time_s == pytest.approx(frame.index / fps, abs=1e-3)
        # Sample k is the first frame at or after k seconds.
        assert frame.time_s >= k - 1e-6
        assert (frame.index - 1) / fps < k
        assert frame.image.shape == (CLIPS[clip][2], CLIPS[clip][1], 3)
        assert frame.image.dtype == np.uint8


def test_sampling_at_a_fractional_frame_rate() -> None:
    # 12.5 fps: one second is 12.5 frames, so samples land on frames 0, 13, 25, 38, ... (1.04 s, 2.0 s, ...).
    _, frames = sample_all(PATHS["cars.mp4"])
    assert [f.index for f in frames] == [0, 13, 25, 38, 50]
    assert [round(f.time_s, 2) for f in frames] == [0.0, 1.04, 2.0, 3.04, 4.0]


@pytest.mark.parametrize("interval_s", [0.5, 2.5, 3.0])
def test_sampling_interval(interval_s: float) -> None:
    sampler, frames = sample_all(SAMPLE, interval_s)
    assert len(frames) == math.ceil(10.0 / interval_s)
    assert [f.index for f in frames] == [round(k * interval_s * 10) for k in range(len(frames))]
    gaps = np.diff([f.time_s for f in frames])
    assert np.allclose(gaps, interval_s)
    assert sampler.frames_read == 100


@pytest.mark.parametrize("clip", ["people.avi", "cars.mp4"])
def test_sampled_frames_equal_a_plain_read_loop(clip: str) -> None:
    """grab() for skipped frames and retrieve() for sampled ones gives exactly what cap.read() gives."""
    _, frames = sample_all(PATHS[clip])
    wanted = {f.index: f.image for f in frames}
    seen: dict[int, NDArray[np.uint8]] = {}
    cap = cv2.VideoCapture(str(PATHS[clip]))
    try:
        index = 0
        while True:
            ok, image = cap.read()
            if not ok:
                break
            if index in wanted:
                seen[index] = image
            index += 1
    finally:
        cap.release()
    assert seen.keys() == wanted.keys()
    for index, image in wanted.items():
        assert np.array_equal(image, seen[index]), f"frame {index} differs from cap.read()"


def test_given_info_is_used_without_probing_again() -> None:
    info = probe(PATHS["cars.mp4"])
    with FrameSampler(PATHS["cars.mp4"], 2.0, info=info) as sampler:
        assert sampler.info is info
        assert [f.index for f in sampler] == [0, 25, 50]


# -- bad input ----------------------------------------------------------------------------------------


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(VideoError) as caught:
        probe(path)
    assert caught.value.reason == "empty_file"
    assert caught.value.exit_code == ExitCode.INPUT


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("random.mp4", random.Random(1).randbytes(200_000)),
        ("notes.avi", b"meeting notes\n" * 100),
        ("tiny.mkv", b"\x00"),
    ],
)
def test_not_a_video(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(VideoError) as caught:
        probe(path)
    assert caught.value.reason == "not_a_video"
    assert name in caught.value.message


@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_truncated_clip(damaged: Callable[[str, str], Path], clip: str) -> None:
    path = damaged(clip, "truncated30")
    with pytest.raises(VideoError) as caught:
        probe(path)
    assert caught.value.reason == "truncated"
    assert "cut off" in caught.value.message


@pytest.mark.parametrize("clip", ["cars.mp4", "walkway.mp4"])
def test_mid_stream_corruption(damaged: Callable[[str, str], Path], clip: str) -> None:
    path = damaged(clip, "mid_zeroed")
    info = probe(path)  # the header and the first frames are fine
    assert info.structure_complete is True
    frames: list[SampledFrame] = []

    def consume() -> None:
        with FrameSampler(path, 1.0, info=info) as sampler:
            frames.extend(sampler)

    error = run_with_timeout(consume)
    assert isinstance(error, VideoError)
    assert error.reason == "corrupt_stream"
    assert "whole file is present" in error.message
    # It failed because decoding stopped early, after yielding the frames before the damage.
    assert 0 < len(frames) < CLIPS[clip][6]


def test_unreadable_paths(tmp_path: Path) -> None:
    for path in (tmp_path, tmp_path / "missing.mp4"):
        with pytest.raises(VideoError) as caught:
            probe(path)
        assert caught.value.reason == "unreadable"


@st.composite
def cut_points(draw: st.DrawFn) -> tuple[str, float]:
    return draw(st.sampled_from(sorted(CLIPS))), draw(st.floats(min_value=0.001, max_value=0.999))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=cut_points())
def test_any_cut_of_a_real_clip_is_truncated(tmp_path_factory: pytest.TempPathFactory, cut: tuple[str, float]) -> None:
    clip, fraction = cut
    data = PATHS[clip].read_bytes()
    path = tmp_path_factory.getbasetemp() / f"cut-{clip}"  # one file per clip, rewritten by each example
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(VideoError) as caught:
        probe(path)
    assert caught.value.reason == "truncated"


def test_video_error_reasons_are_a_closed_set() -> None:
    assert isinstance(VideoError("truncated", "x"), InputError)
    with pytest.raises(ValueError, match="unknown video error reason"):
        VideoError("bad luck", "x")


@pytest.mark.parametrize(
    "changes",
    [{"width": 0}, {"height": -1}, {"fps": 0.0}, {"fps": math.nan}, {"fps": 90000.0}, {"reported_frames": -1}],
)
def test_video_info_validates(changes: dict[str, float]) -> None:
    base: dict[str, object] = {
        "path": Path("x.mp4"),
        "codec": "h264",
        "width": 640,
        "height": 480,
        "fps": 25.0,
        "reported_frames": 10,
        "duration_s": 0.4,
        "size": 1,
    }
    with pytest.raises(ValueError):
        VideoInfo(**(base | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(("interval_s", "queue_size"), [(0.0, 8), (-1.0, 8), (math.inf, 8), (math.nan, 8), (1.0, 0)])
def test_sampler_rejects_bad_arguments(interval_s: float, queue_size: int) -> None:
    with pytest.raises(ValueError):
        FrameSampler(PATHS["cars.mp4"], interval_s, queue_size=queue_size)


# -- the producer thread --------------------------------------------------------------------------------


def test_decoder_failure_reaches_the_consumer(tmp_path: Path) -> None:
    """The file disappears between probe and decoding: the producer fails at once and says so."""
    path = tmp_path / "car.mp4"
    path.write_bytes(PATHS["cars.mp4"].read_bytes())
    info = probe(path)
    path.unlink()

    def consume() -> None:
        with FrameSampler(path, 1.0, info=info) as sampler:
            list(sampler)

    error = run_with_timeout(consume)
    assert isinstance(error, VideoError)
    assert error.reason == "unreadable"


class _ExplodingSampler(FrameSampler):
    """A decoder that hits an unexpected bug after a few frames, while the consumer is slow."""

    def _put(self, item: SampledFrame) -> bool:
        if item.index >= 30:
            raise RuntimeError("decoder bug")
        return super()._put(item)


def test_end_marker_is_sent_when_the_producer_raises() -> None:
    frames: list[SampledFrame] = []

    def consume() -> None:
        with _ExplodingSampler(PATHS["people.avi"], 1.0, queue_size=1) as sampler:
            for frame in sampler:
                time.sleep(0.01)
                frames.append(frame)

    error = run_with_timeout(consume)
    assert isinstance(error, VideoError)
    assert error.reason == "corrupt_stream"
    assert isinstance(error.__cause__, RuntimeError)
    assert [f.index for f in frames] == [0, 10, 20]


@pytest.mark.parametrize("queue_size", [1, 8])
def test_early_stop_ends_the_producer(queue_size: int) -> None:
    # The longest shipped clip and a small queue: the producer is blocked on a full queue when the consumer leaves.
    with FrameSampler(SAMPLE, 0.1, queue_size=queue_size) as sampler:
        for frame in sampler:
            if frame.index >= 5:
                time.sleep(0.2)  # let the producer fill the queue and block on it
                assert sampler_threads() != []
                break
    assert wait_for_no_sampler_threads(timeout_s=1.0) == []
    assert sampler.frames_read < 100


def test_close_stops_decoding_between_samples() -> None:
    # One sample in the whole clip: after it the producer only grabs, and must still notice the stop.
    with FrameSampler(SAMPLE, 1000.0) as sampler:
        first = next(iter(sampler))
    assert first.index == 0
    assert sampler.frames_read < 100


def test_abandoned_iterator_ends_the_producer() -> None:
    sampler = FrameSampler(SAMPLE, 0.1, queue_size=1)
    frames = iter(sampler)
    next(frames)
    assert sampler_threads() != []
    frames.close()  # what garbage collection of an abandoned generator does
    assert wait_for_no_sampler_threads() == []


def test_close_from_another_thread_ends_the_iteration() -> None:
    """What the per-video watchdog does: close() while the consumer is busy or waiting."""
    seen: list[int] = []
    sampler = FrameSampler(SAMPLE, 0.5, queue_size=2)

    def consume() -> None:
        with sampler:
            for frame in sampler:
                seen.append(frame.index)
                time.sleep(0.1)

    closer = threading.Timer(0.3, sampler.close)
    closer.start()
    try:
        error = run_with_timeout(consume)
    finally:
        closer.cancel()
    assert error is None
    assert 0 < len(seen) < 20


def test_a_sampler_iterates_once() -> None:
    with FrameSampler(PATHS["cars.mp4"], 2.0) as sampler:
        assert len(list(sampler)) == 3
        with pytest.raises(RuntimeError, match="only once"):
            iter(sampler)
