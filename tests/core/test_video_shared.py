"""Extras on the full test clips: frame sampling and probing on the four real recordings (H.264 with an edit
list, a 1394-frame clip, the original legacy-codec AVI), and on them damaged in known ways. The default
suite runs the same code on the shipped cuts (test_video.py)."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from tests.conftest import require_shared_testdata
from tests.core.test_video import (  # noqa: F401 - no_leftover_threads is an autouse fixture here too
    _ExplodingSampler,
    no_leftover_threads,
    run_with_timeout,
    sample_all,
    sampler_threads,
    wait_for_no_sampler_threads,
)
from vvctl.core.video import FrameSampler, SampledFrame, VideoError, probe

require_shared_testdata()

# Measured by decoding to EOF (SOURCES.md): codec as OpenCV reports it, size, fps, reported and
# decodable frame counts, and the frames a 1 s sampling must yield (one per started second of video).
CLIPS = {
    "vtest.avi": ("MP43", 768, 576, 10.0, 795, 795, 80),
    "car-detection.mp4": ("h264", 768, 432, 12.5, 377, 377, 31),
    "person-bicycle-car-detection.mp4": ("h264", 768, 432, 12.0, 467, 459, 39),
    "one-by-one-person-detection.mp4": ("h264", 768, 432, 10.0, 1394, 1394, 140),
}


@pytest.fixture(scope="session")
def damaged(tmp_path_factory: pytest.TempPathFactory, videos_dir: Path) -> Callable[[str, str], Path]:
    """Write a real clip damaged in a named way; each variant is written once per session."""
    root = tmp_path_factory.mktemp("damaged")
    made: dict[tuple[str, str], Path] = {}

    def make(clip: str, how: str) -> Path:
        if (clip, how) in made:
            return made[clip, how]
        data = bytearray((videos_dir / clip).read_bytes())
        if how == "truncated30":
            data = data[: int(len(data) * 0.3)]
        elif how == "mid_zeroed":
            # Ten per cent of the file, from its middle on, overwritten with zeros: a damaged disk
            # sector run or a botched copy. The container structure stays intact.
            start = len(data) // 2
            data[start : start + len(data) // 10] = bytes(len(data) // 10)
        elif how == "payload_random":
            # All media data replaced by noise; the header and index (in front of it) stay intact.
            start = data.index(b"mdat") + 12
            data[start:] = random.Random(4).randbytes(len(data) - start)
        elif how == "codec_renamed":
            # The sample entry's codec tag renamed to one no decoder knows; everything else intact.
            assert data.count(b"avc1") == 1
            data = bytearray(data.replace(b"avc1", b"zzzz"))
        else:
            raise ValueError(how)
        path = root / f"{how}-{clip}"
        path.write_bytes(bytes(data))
        made[clip, how] = path
        return path

    return make


@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_probe_reads_stream_properties(videos_dir: Path, clip: str) -> None:
    codec, width, height, fps, reported, _, _ = CLIPS[clip]
    info = probe(videos_dir / clip)
    assert (info.codec, info.width, info.height, info.reported_frames) == (codec, width, height, reported)
    assert info.fps == pytest.approx(fps)
    assert info.duration_s == pytest.approx(reported / fps)
    assert info.size == (videos_dir / clip).stat().st_size
    assert info.container == ("AVI" if clip.endswith(".avi") else "MP4/MOV")
    assert info.structure_complete is True


@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_sampling_counts_and_timestamps(videos_dir: Path, clip: str) -> None:
    _, _, _, fps, _, decodable, sampled = CLIPS[clip]
    sampler, frames = sample_all(videos_dir / clip)
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


def test_sampling_at_a_fractional_frame_rate(videos_dir: Path) -> None:
    # 12.5 fps: one second is 12.5 frames, so samples land on frames 0, 13, 25, 38, ... (1.04 s, 2.0 s, ...).
    _, frames = sample_all(videos_dir / "car-detection.mp4")
    assert [f.index for f in frames[:5]] == [0, 13, 25, 38, 50]
    assert [round(f.time_s, 2) for f in frames[:5]] == [0.0, 1.04, 2.0, 3.04, 4.0]


@pytest.mark.parametrize("interval_s", [0.5, 2.5, 10.0])
def test_sampling_interval(videos_dir: Path, interval_s: float) -> None:
    sampler, frames = sample_all(videos_dir / "vtest.avi", interval_s)
    assert len(frames) == math.ceil(79.5 / interval_s)
    assert [f.index for f in frames] == [round(k * interval_s * 10) for k in range(len(frames))]
    gaps = np.diff([f.time_s for f in frames])
    assert np.allclose(gaps, interval_s)
    assert sampler.frames_read == 795


def test_reported_frame_count_is_not_trusted(videos_dir: Path) -> None:
    # The container says 467 frames (edit list); 459 decode. That is normal, not an error.
    sampler, frames = sample_all(videos_dir / "person-bicycle-car-detection.mp4")
    assert sampler.info.reported_frames == 467
    assert sampler.frames_read == 459
    assert frames[-1].index == 456
    assert sampler.duration_s == pytest.approx(459 / 12)


@pytest.mark.parametrize("clip", ["vtest.avi", "car-detection.mp4"])
def test_sampled_frames_equal_a_plain_read_loop(videos_dir: Path, clip: str) -> None:
    """grab() for skipped frames and retrieve() for sampled ones gives exactly what cap.read() gives."""
    _, frames = sample_all(videos_dir / clip)
    wanted = {f.index: f.image for f in frames}
    seen: dict[int, NDArray[np.uint8]] = {}
    cap = cv2.VideoCapture(str(videos_dir / clip))
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


def test_given_info_is_used_without_probing_again(videos_dir: Path) -> None:
    info = probe(videos_dir / "car-detection.mp4")
    with FrameSampler(videos_dir / "car-detection.mp4", 5.0, info=info) as sampler:
        assert sampler.info is info
        assert [f.index for f in sampler] == [0, 63, 125, 188, 250, 313, 375]


# -- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_truncated_clip(damaged: Callable[[str, str], Path], clip: str) -> None:
    path = damaged(clip, "truncated30")
    with pytest.raises(VideoError) as caught:
        probe(path)
    assert caught.value.reason == "truncated"
    assert "cut off" in caught.value.message


@pytest.mark.parametrize("clip", ["vtest.avi", "car-detection.mp4", "person-bicycle-car-detection.mp4"])
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


def test_stream_that_opens_but_never_decodes(damaged: Callable[[str, str], Path]) -> None:
    with pytest.raises(VideoError) as caught:
        probe(damaged("car-detection.mp4", "payload_random"))
    assert caught.value.reason == "no_frames"


def test_unknown_codec(damaged: Callable[[str, str], Path]) -> None:
    with pytest.raises(VideoError) as caught:
        probe(damaged("car-detection.mp4", "codec_renamed"))
    assert caught.value.reason == "unsupported_codec"


def test_cut_right_after_the_index(tmp_path: Path, videos_dir: Path) -> None:
    """An MP4 with its index in front, cut where the media data would start: every box is whole."""
    data = (videos_dir / "car-detection.mp4").read_bytes()
    path = tmp_path / "car.mp4"
    path.write_bytes(data[: data.index(b"mdat") - 4])
    with pytest.raises(VideoError) as caught:
        probe(path)
    assert caught.value.reason == "truncated"


@st.composite
def cut_points(draw: st.DrawFn) -> tuple[str, float]:
    return draw(st.sampled_from(["vtest.avi", "car-detection.mp4", "person-bicycle-car-detection.mp4"])), draw(
        st.floats(min_value=0.001, max_value=0.999)
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=cut_points())
def test_any_cut_of_a_real_clip_is_truncated(
    tmp_path_factory: pytest.TempPathFactory, videos_dir: Path, cut: tuple[str, float]
) -> None:
    clip, fraction = cut
    data = (videos_dir / clip).read_bytes()
    path = tmp_path_factory.getbasetemp() / f"cut-{clip}"  # one file per clip, rewritten by each example
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(VideoError) as caught:
        probe(path)
    assert caught.value.reason == "truncated"


@pytest.mark.parametrize(("interval_s", "queue_size"), [(0.0, 8), (-1.0, 8), (math.inf, 8), (math.nan, 8), (1.0, 0)])
def test_sampler_rejects_bad_arguments(videos_dir: Path, interval_s: float, queue_size: int) -> None:
    with pytest.raises(ValueError):
        FrameSampler(videos_dir / "car-detection.mp4", interval_s, queue_size=queue_size)


# -- the producer thread --------------------------------------------------------------------------------


def test_decoder_failure_reaches_the_consumer(tmp_path: Path, videos_dir: Path) -> None:
    """The file disappears between probe and decoding: the producer fails at once and says so."""
    path = tmp_path / "car.mp4"
    path.write_bytes((videos_dir / "car-detection.mp4").read_bytes())
    info = probe(path)
    path.unlink()

    def consume() -> None:
        with FrameSampler(path, 1.0, info=info) as sampler:
            list(sampler)

    error = run_with_timeout(consume)
    assert isinstance(error, VideoError)
    assert error.reason == "unreadable"


def test_end_marker_is_sent_when_the_producer_raises(videos_dir: Path) -> None:
    frames: list[SampledFrame] = []

    def consume() -> None:
        with _ExplodingSampler(videos_dir / "vtest.avi", 1.0, queue_size=1) as sampler:
            for frame in sampler:
                time.sleep(0.01)
                frames.append(frame)

    error = run_with_timeout(consume)
    assert isinstance(error, VideoError)
    assert error.reason == "corrupt_stream"
    assert isinstance(error.__cause__, RuntimeError)
    assert [f.index for f in frames] == [0, 10, 20]


@pytest.mark.parametrize("queue_size", [1, 8])
def test_early_stop_ends_the_producer(videos_dir: Path, queue_size: int) -> None:
    # A long clip and a small queue: the producer is blocked on a full queue when the consumer leaves.
    with FrameSampler(videos_dir / "one-by-one-person-detection.mp4", 0.1, queue_size=queue_size) as sampler:
        for frame in sampler:
            if frame.index >= 5:
                time.sleep(0.2)  # let the producer fill the queue and block on it
                assert sampler_threads() != []
                break
    assert wait_for_no_sampler_threads(timeout_s=1.0) == []
    assert sampler.frames_read < 1394


def test_close_stops_decoding_between_samples(videos_dir: Path) -> None:
    # One sample in the whole clip: after it the producer only grabs, and must still notice the stop.
    with FrameSampler(videos_dir / "one-by-one-person-detection.mp4", 1000.0) as sampler:
        first = next(iter(sampler))
    assert first.index == 0
    assert sampler.frames_read < 1394


def test_abandoned_iterator_ends_the_producer(videos_dir: Path) -> None:
    sampler = FrameSampler(videos_dir / "one-by-one-person-detection.mp4", 0.1, queue_size=1)
    frames = iter(sampler)
    next(frames)
    assert sampler_threads() != []
    frames.close()  # what garbage collection of an abandoned generator does
    assert wait_for_no_sampler_threads() == []


def test_close_from_another_thread_ends_the_iteration(videos_dir: Path) -> None:
    """What the per-video watchdog does: close() while the consumer is busy or waiting."""
    seen: list[int] = []
    sampler = FrameSampler(videos_dir / "one-by-one-person-detection.mp4", 1.0, queue_size=2)

    def consume() -> None:
        with sampler:
            for frame in sampler:
                seen.append(frame.index)
                time.sleep(0.05)

    closer = threading.Timer(0.3, sampler.close)
    closer.start()
    try:
        error = run_with_timeout(consume)
    finally:
        closer.cancel()
    assert error is None
    assert 0 < len(seen) < 140


def test_a_sampler_iterates_once(videos_dir: Path) -> None:
    with FrameSampler(videos_dir / "car-detection.mp4", 10.0) as sampler:
        assert len(list(sampler)) == 4
        with pytest.raises(RuntimeError, match="only once"):
            iter(sampler)
