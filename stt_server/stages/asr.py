"""Transcription of a turn: overlapped chunks in, merged tentative and final segments out."""

from __future__ import annotations

import string
from collections.abc import Awaitable, Callable

import numpy as np
import strops

from stt_server.audio import SAMPLE_RATE, Audio
from stt_server.config import SessionSettings
from stt_server.pipeline import DEFAULT_QUEUE_SIZE, Stage
from stt_server.protocol import TranscriptionSegment
from stt_server.stages.vad import EndOfTurn, SpeechChunk, VadEvent

Transcriber = Callable[[Audio], Awaitable[str]]

_PUNCTUATION = str.maketrans("", "", string.punctuation + "“”‘’«»…–—")


def word_key(word: str) -> str:
    """Matching key of a word: lower case, punctuation removed ("Hello," ~ "hello")."""
    return word.lower().translate(_PUNCTUATION)


def merge_words(previous: list[str], new: list[str]) -> list[str]:
    """Stitch `new` onto `previous` where a suffix of one overlaps a prefix of the other.

    Alignment runs on normalised keys; the output keeps the words as the model wrote them
    (the newer transcript wins inside the overlap, having heard more context).
    """
    if not previous:
        return list(new)
    if not new:
        return list(previous)
    cut = strops.align_overlap([word_key(w) for w in previous], [word_key(w) for w in new])
    if cut is None:
        return [*previous, *new]
    cut_prev, cut_new = cut
    return [*previous[:cut_prev], *new[cut_new:]]


class TurnTranscript:
    """The words of the current turn and the audio tail re-sent with the next chunk."""

    def __init__(self, overlap_seconds: float) -> None:
        self._overlap_samples = round(overlap_seconds * SAMPLE_RATE)
        self.words: list[str] = []
        self.tail = np.zeros(0, dtype=np.float32)

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def with_overlap(self, chunk: Audio) -> Audio:
        return np.concatenate([self.tail, chunk]) if self.tail.size else chunk

    def add(self, audio: Audio, text: str) -> None:
        """Record the transcript of `audio` (overlap + chunk) and keep its tail for next time."""
        self.words = merge_words(self.words, text.split())
        if self._overlap_samples:
            self.tail = audio[-self._overlap_samples :]

    def reset(self) -> None:
        self.words = []
        self.tail = np.zeros(0, dtype=np.float32)


class AsrStage(Stage[VadEvent, TranscriptionSegment]):
    """Sends a tentative segment after each chunk and the final one at the end of each turn."""

    def __init__(
        self,
        transcribe: Transcriber,
        settings: SessionSettings,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        super().__init__(queue_size=queue_size)
        self._transcribe = transcribe
        self._turn = TurnTranscript(settings.overlap)

    async def handle(self, item: VadEvent) -> None:
        if isinstance(item, SpeechChunk):
            audio = self._turn.with_overlap(item.audio)
            text = await self._transcribe(audio)
            self._turn.add(audio, text)
            if self._turn.words:
                await self.emit(TranscriptionSegment(text=self._turn.text))
        elif isinstance(item, EndOfTurn):
            if self._turn.words:
                await self.emit(
                    TranscriptionSegment(text=self._turn.text, is_final=True, is_end_of_turn=True)
                )
            self._turn.reset()
