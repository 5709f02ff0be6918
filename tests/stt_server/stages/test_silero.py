"""Batched Silero across sessions gives each session what it gets alone."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from stt_server.stages.vad_batching import SileroStream, VadBatcher

from stt_server.stages.vad import WINDOW, SileroModel, SileroVad
from tests.stt_server.speech import Recording


@pytest.fixture(scope="module")
def silero() -> SileroModel:
    return SileroModel()


def windows_of(audio: np.ndarray, start: int, count: int) -> np.ndarray:
    return audio[start * WINDOW : (start + count) * WINDOW].reshape(count, WINDOW)


async def test_concurrent_sessions_batch_and_keep_their_own_state(
    silero: SileroModel, recording: Recording
) -> None:
    """Twelve sessions, each submitting different-sized pieces at once: every session's
    probabilities equal the per-session model's, and the runs held several sessions' rows."""
    sessions = 12
    per_session = 120
    audios = [windows_of(recording.audio, 37 * k, per_session) for k in range(sessions)]
    alone = [SileroVad(silero).probabilities(a) for a in audios]
    batcher = VadBatcher.for_loop(silero.session)
    streams = [SileroStream() for _ in range(sessions)]
    got: list[list[float]] = [[] for _ in range(sessions)]

    async def session(k: int) -> None:
        done = 0
        sizes = [1, 2, 3, 5][k % 4 :] + [1, 2, 3, 5][: k % 4]
        step = 0
        while done < per_session:
            n = min(sizes[step % len(sizes)], per_session - done)
            got[k] += await batcher.probabilities(streams[k], audios[k][done : done + n])
            done += n
            step += 1

    before = len(batcher.batch_sizes)
    await asyncio.gather(*(session(k) for k in range(sessions)))
    for k in range(sessions):
        assert got[k] == pytest.approx(alone[k], abs=1e-4)
    assert max(alone[0]) > 0.5  # there is speech in what was compared
    assert max(batcher.batch_sizes[before:]) > 1


async def test_one_batcher_per_model_in_a_loop(silero: SileroModel) -> None:
    assert VadBatcher.for_loop(silero.session) is VadBatcher.for_loop(silero.session)
    assert VadBatcher.for_loop(silero.session) is not VadBatcher.for_loop(SileroModel().session)


async def test_no_windows_no_run(silero: SileroModel) -> None:
    batcher = VadBatcher.for_loop(silero.session)
    before = len(batcher.batch_sizes)
    assert await batcher.probabilities(SileroStream(), np.zeros((0, WINDOW), np.float32)) == []
    assert len(batcher.batch_sizes) == before


async def test_a_failed_run_fails_its_requests_and_the_batcher_goes_on(
    silero: SileroModel,
) -> None:
    batcher = VadBatcher.for_loop(silero.session)
    bad = np.zeros((1, WINDOW), np.float64)  # ONNX takes float32 only
    with pytest.raises(Exception, match=r"(?i)type"):  # onnxruntime's own exception type
        await batcher.probabilities(SileroStream(), bad)  # type: ignore[arg-type]
    good = await batcher.probabilities(SileroStream(), np.zeros((2, WINDOW), np.float32))
    assert len(good) == 2
    assert all(0.0 <= p <= 1.0 for p in good)
