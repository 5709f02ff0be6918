"""A whole file through the server's shared workers: Silero over the file, cut into chunks of
at most `FILE_SEGMENTS.max_buffer` seconds at pauses, each chunk transcribed on its own.

The chunks go to the inference pool at batch priority: several of them (and other uploads'
chunks) fill the engine's batches, while a live session's finals still go first. Texts come
back in file order, each as soon as it and every chunk before it are done, so a caller can
stream them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from stt_server.audio import Audio
from stt_server.settings import SessionSettings
from stt_server.stages.silero import WINDOW, SileroStream, VadBatcher
from stt_server.stages.vad import SpeechChunk, VadSegmenter

# How a file is cut: chunks as long as engines take well, since Whisper pads every request to
# 30 s and so a short chunk costs as much as a full one. A pause of 0.5 s cuts once 20 s of
# speech are buffered; pauses shorter than 3 s stay inside a chunk (a longer one always cuts),
# and no chunk exceeds 28 s (split in its longest pause). No speculation or interims: nobody
# waits for a turn's end.
FILE_SEGMENTS = SessionSettings(
    min_chunk=20.0,
    small_gap=0.5,
    large_gap=3.0,
    max_buffer=28.0,
    max_leading_silence=0.5,
    hangover=0.2,
    speculate=False,
    interim_interval=0.0,
)
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


async def transcribe_file(
    audio: Audio, batcher: VadBatcher, inference: BatchInference
) -> AsyncGenerator[Segment]:
    """Each speech chunk's text, in file order; chunks with no words are skipped."""
    pending: deque[tuple[SpeechChunk, asyncio.Task[str]]] = deque()
    try:
        async for chunk in speech_chunks(audio, batcher):
            task = asyncio.create_task(inference.transcribe_batch(chunk.audio))
            pending.append((chunk, task))
            while pending and (len(pending) >= _IN_FLIGHT or pending[0][1].done()):
                if (segment := await _next(pending)) is not None:
                    yield segment
        while pending:
            if (segment := await _next(pending)) is not None:
                yield segment
    finally:
        for _, task in pending:
            task.cancel()
        await asyncio.gather(*(t for _, t in pending), return_exceptions=True)


async def _next(pending: deque[tuple[SpeechChunk, asyncio.Task[str]]]) -> Segment | None:
    chunk, task = pending[0]
    text = (await task).strip()
    pending.popleft()
    return Segment(chunk.start, chunk.end, text) if text else None
