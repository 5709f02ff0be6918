"""A whole file through the server's shared workers: Silero over the file cuts the speech out
at pauses, and consecutive pieces are packed (with a short silence between them, the long
pauses left out) into requests of at most `MAX_REQUEST_SECONDS`, each transcribed on its own.

Packing is what makes a file cheap: Whisper pads every request to 30 s, so a request of 5 s
costs as much as one of 28 s (faster-whisper's own VAD mode packs the same way).

The requests go to the inference pool at batch priority: several of them (and other uploads')
fill the engine's batches, while a live session's finals still go first. Texts come back in
file order, each as soon as it and every request before it are done, so a caller can stream
them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from stt_server.audio import SAMPLE_RATE, Audio
from stt_server.settings import SessionSettings
from stt_server.stages.silero import WINDOW, SileroStream, VadBatcher
from stt_server.stages.vad import SpeechChunk, VadSegmenter

# How a file is cut: at every pause of 1 s, and at a pause of 0.5 s once 5 s of speech are
# buffered; no piece is longer than the longest request. No speculation or interims: nobody
# waits for a turn's end.
MAX_REQUEST_SECONDS = 28.0
FILE_SEGMENTS = SessionSettings(
    min_chunk=5.0,
    small_gap=0.5,
    large_gap=1.0,
    max_buffer=MAX_REQUEST_SECONDS,
    max_leading_silence=0.3,
    hangover=0.2,
    speculate=False,
    interim_interval=0.0,
)
# Silence between two packed pieces: a pause the model hears as one.
_JOIN = np.zeros(SAMPLE_RATE // 5, np.float32)
# Windows per VAD request: live sessions' windows join the batcher's runs between two slices
# of a file instead of waiting for a whole file (10 s of audio per slice).
_VAD_SLICE = 312
# Chunks in the engine's queue at once per file: enough to fill batches, few enough that a
# client who leaves does not leave much work behind.
_IN_FLIGHT = 8


class BatchInference(Protocol):
    async def transcribe_batch(self, audio: Audio) -> str: ...


@dataclass(frozen=True)
class Segment:
    """The text of `start`..`end` (seconds from the start of the file)."""

    start: float
    end: float
    text: str


async def speech_chunks(
    audio: Audio, batcher: VadBatcher, settings: SessionSettings = FILE_SEGMENTS
) -> AsyncIterator[SpeechChunk]:
    """The speech in `audio`, cut at pauses, in order (silence between chunks is left out)."""
    segmenter = VadSegmenter(settings)
    stream = SileroStream()
    # The last partial window padded with silence, so the file's end is not lost.
    windows = np.pad(audio, (0, -len(audio) % WINDOW)).reshape(-1, WINDOW)
    for first in range(0, len(windows), _VAD_SLICE):
        part = windows[first : first + _VAD_SLICE]
        probabilities = await batcher.probabilities(stream, part)
        for window, probability in zip(part, probabilities, strict=True):
            for event in segmenter.push(window, probability):
                if isinstance(event, SpeechChunk):
                    yield event
    for event in segmenter.finish():
        if isinstance(event, SpeechChunk):
            yield event


async def requests(audio: Audio, batcher: VadBatcher) -> AsyncIterator[tuple[float, float, Audio]]:
    """(start, end, audio) of each request: consecutive speech pieces packed up to
    `MAX_REQUEST_SECONDS`, in file order."""
    limit = round(MAX_REQUEST_SECONDS * SAMPLE_RATE)
    group: list[SpeechChunk] = []
    size = 0
    async for chunk in speech_chunks(audio, batcher):
        if group and size + len(_JOIN) + len(chunk.audio) > limit:
            yield _pack(group)
            group, size = [], 0
        size += (len(_JOIN) if group else 0) + len(chunk.audio)
        group.append(chunk)
    if group:
        yield _pack(group)


def _pack(group: list[SpeechChunk]) -> tuple[float, float, Audio]:
    parts: list[Audio] = []
    for chunk in group:
        parts += [_JOIN, chunk.audio] if parts else [chunk.audio]
    return group[0].start, group[-1].end, np.concatenate(parts)


async def transcribe_file(
    audio: Audio, batcher: VadBatcher, inference: BatchInference
) -> AsyncGenerator[Segment]:
    """Each request's text as a segment, in file order; requests with no words are skipped."""
    pending: deque[tuple[float, float, asyncio.Task[str]]] = deque()
    try:
        async for start, end, packed in requests(audio, batcher):
            task = asyncio.create_task(inference.transcribe_batch(packed))
            pending.append((start, end, task))
            while pending and (len(pending) >= _IN_FLIGHT or pending[0][2].done()):
                if (segment := await _next(pending)) is not None:
                    yield segment
        while pending:
            if (segment := await _next(pending)) is not None:
                yield segment
    finally:
        for *_, task in pending:
            task.cancel()
        await asyncio.gather(*(t for *_, t in pending), return_exceptions=True)


async def _next(pending: deque[tuple[float, float, asyncio.Task[str]]]) -> Segment | None:
    start, end, task = pending[0]
    text = (await task).strip()
    pending.popleft()
    return Segment(start, end, text) if text else None
