from __future__ import annotations

import asyncio

import numpy as np
import pytest

from stt_server.audio import SAMPLE_RATE, Audio
from stt_server.files.transcribe import (
    FILE_SEGMENTS,
    MAX_REQUEST_SECONDS,
    requests,
    speech_chunks,
    transcribe_file,
)
from stt_server.stages.silero import SileroModel, VadBatcher
from tests.stt_server.speech import SENTENCES, make_recording

# Pauses of 3.5 s always cut a file (FILE_SEGMENTS.large_gap is 1 s).
PAUSES = (3.5,) * len(SENTENCES)
# Three times the sentences: about 55 s of speech, more than one request.
LONG = (SENTENCES * 3, PAUSES * 3)


class SlowFirst:
    """Batch inference whose first requests take longest: answers arrive out of order."""

    def __init__(self) -> None:
        self.requests: list[int] = []

    async def transcribe_batch(self, audio: Audio) -> str:
        index = len(self.requests)
        self.requests.append(len(audio))
        await asyncio.sleep(0.1 * max(0, 5 - index))
        return f" text{index} "


@pytest.fixture(scope="module")
def silero() -> SileroModel:
    return SileroModel()


async def test_a_file_is_cut_at_its_long_pauses(silero: SileroModel) -> None:
    recording = make_recording(SENTENCES, PAUSES)
    batcher = VadBatcher(silero)
    try:
        chunks = [c async for c in speech_chunks(recording.audio, batcher)]
    finally:
        await batcher.stop()
    assert len(chunks) == len(SENTENCES)
    for chunk, (start, end) in zip(chunks, recording.spans, strict=True):
        # Each chunk holds its sentence, with at most the hangover and a little leading silence.
        assert chunk.start <= start + 0.1
        assert end - 0.1 <= chunk.end <= end + FILE_SEGMENTS.hangover + 0.1
        assert len(chunk.audio) == pytest.approx((chunk.end - chunk.start) * SAMPLE_RATE, abs=1)


async def test_pieces_are_packed_into_requests_of_at_most_the_limit(silero: SileroModel) -> None:
    recording = make_recording(*LONG)
    batcher = VadBatcher(silero)
    try:
        chunks = [c async for c in speech_chunks(recording.audio, batcher)]
        packed = [r async for r in requests(recording.audio, batcher)]
    finally:
        await batcher.stop()
    assert len(chunks) == len(LONG[0])
    assert 2 <= len(packed) < len(chunks)
    assert all(len(audio) <= MAX_REQUEST_SECONDS * SAMPLE_RATE for _, _, audio in packed)
    # Every piece's audio is in one request, in order; the long pauses are left out.
    speech = sum(len(c.audio) for c in chunks)
    joins = (len(chunks) - len(packed)) * SAMPLE_RATE // 5
    assert sum(len(audio) for _, _, audio in packed) == speech + joins
    assert packed[0][0] == chunks[0].start
    assert packed[-1][1] == chunks[-1].end
    assert [start for start, _, _ in packed] == sorted(start for start, _, _ in packed)


async def test_texts_come_in_file_order_however_the_engine_answers(silero: SileroModel) -> None:
    recording = make_recording(*LONG)
    inference = SlowFirst()
    batcher = VadBatcher(silero)
    try:
        segments = [s async for s in transcribe_file(recording.audio, batcher, inference)]
    finally:
        await batcher.stop()
    assert len(segments) >= 2
    assert [s.text for s in segments] == [f"text{i}" for i in range(len(segments))]
    assert [s.start for s in segments] == sorted(s.start for s in segments)


async def test_silence_has_no_segments(silero: SileroModel) -> None:
    batcher = VadBatcher(silero)
    try:
        silence = np.zeros(5 * SAMPLE_RATE, np.float32)
        segments = [s async for s in transcribe_file(silence, batcher, SlowFirst())]
    finally:
        await batcher.stop()
    assert segments == []
