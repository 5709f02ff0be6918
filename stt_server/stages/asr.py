"""Transcription of a turn: overlapped chunks in, merged tentative and final transcripts out.

Each chunk is sent to the engine with the last `overlap` seconds of the turn's audio in front of
it, and the two transcripts are stitched where their words align. Two things make the stitched
text read like one transcript of the whole turn:

- the engine capitalises the first word of every request as if a sentence began there; at a
  join, that capital is undone unless the word was capitalised mid-sentence before (a name);
- when the words do not align (noise made the two transcripts of the overlap audio disagree),
  the newer transcript, which heard more context, replaces the words that came from the overlap
  audio instead of being appended after them.
"""

from __future__ import annotations

import asyncio
import copy
import string
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import strops

from stt_server import metrics
from stt_server.audio import SAMPLE_RATE, Audio
from stt_server.errors import EngineError
from stt_server.pipeline import DEFAULT_QUEUE_SIZE, Stage
from stt_server.settings import SessionSettings
from stt_server.stages.vad import EndOfTurn, Interim, Speculate, SpeechChunk, SpeechStart, VadEvent

_PUNCTUATION = str.maketrans("", "", string.punctuation + "“”‘’«»…–—")
_SENTENCE_END = (".", "?", "!", "…")


class Inference(Protocol):
    """What the ASR stage needs of the inference workers."""

    async def transcribe(self, audio: Audio) -> str: ...

    async def try_transcribe(self, audio: Audio) -> str | None: ...


@dataclass(frozen=True)
class Transcript:
    """Text of the current turn so far (`start`..`end`, seconds of session audio).

    Tentative (`is_final=False`) transcripts come after each chunk and from interim decodes while
    the speaker talks; the final one ends the turn. `flushed`: the client asked for it.
    """

    text: str
    start: float
    end: float
    is_final: bool = False
    is_end_of_turn: bool = False
    flushed: bool = False
    interim: bool = False
    speech_end_wall: float = 0.0  # finals: the monotonic time the turn was over for the client


AsrOutput = Transcript | SpeechStart


def word_key(word: str) -> str:
    """Matching key of a word: lower case, punctuation removed ("Hello," ~ "hello")."""
    return word.lower().translate(_PUNCTUATION)


def _ends_sentence(word: str) -> bool:
    return word.rstrip("\"'”’)»").endswith(_SENTENCE_END)


def _starts_sentence(words: list[str], index: int) -> bool:
    return index == 0 or _ends_sentence(words[index - 1])


def _is_capitalised(word: str) -> bool:
    letters = [c for c in word if c.isalpha()]
    return len(letters) > 1 and letters[0].isupper() and not any(c.isupper() for c in letters[1:])


def _uncapitalise(word: str) -> str:
    for i, c in enumerate(word):
        if c.isalpha():
            return word[:i] + c.lower() + word[i + 1 :]
    return word


def _join(before: list[str], after: list[str], capital_known_at: str | None) -> list[str]:
    """`before + after`, undoing a sentence-start capital the engine gave `after[0]` when the
    text before it does not end a sentence. `capital_known_at`: the same word as the earlier
    transcript wrote it, when the two aligned there (its casing is the one heard in context)."""
    if not before or not after or _ends_sentence(before[-1]) or not _is_capitalised(after[0]):
        return [*before, *after]
    if capital_known_at is not None and _is_capitalised(capital_known_at):
        return [*before, *after]  # capitalised mid-sentence before too: a name
    return [*before, _uncapitalise(after[0]), *after[1:]]


def merge_words(previous: list[str], new: list[str], overlap_words: int | None = None) -> list[str]:
    """Stitch `new` onto `previous` where a suffix of one overlaps a prefix of the other.

    Alignment runs on normalised keys; the output keeps the words as the model wrote them (the
    newer transcript wins inside the overlap, having heard more context). Without an alignment,
    the last `overlap_words` of `previous` (those heard in the overlap audio, if known) give way
    to `new`.
    """
    if not previous:
        return list(new)
    if not new:
        return list(previous)
    cut = strops.align_overlap([word_key(w) for w in previous], [word_key(w) for w in new])
    if cut is None:
        keep = len(previous) - min(overlap_words or 0, len(previous))
        return _join(previous[:keep], new, None)
    cut_prev, cut_new = cut
    joined = new[cut_new:]
    if not _starts_sentence(new, cut_new):
        return [*previous[:cut_prev], *joined]
    return _join(previous[:cut_prev], joined, previous[cut_prev])


class TurnTranscript:
    """The words of the current turn and the audio tail re-sent with the next chunk."""

    def __init__(self, overlap_seconds: float) -> None:
        self._overlap_samples = round(overlap_seconds * SAMPLE_RATE)
        self.words: list[str] = []
        self.tail = np.zeros(0, dtype=np.float32)
        self.start: float | None = None
        self.end = 0.0
        self._last_words = 0  # words of the last request's transcript
        self._last_samples = 0  # samples of the last request's audio (overlap + chunk)

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def with_overlap(self, chunk: Audio) -> Audio:
        return np.concatenate([self.tail, chunk]) if self.tail.size else chunk

    def merged(self, text: str) -> list[str]:
        """The turn's words with the transcript of `tail + next chunk` stitched on."""
        overlap_words = None
        if self._last_samples and self.tail.size:
            # The previous transcript's words spread over its audio; the tail is its last part.
            overlap_words = round(self._last_words * self.tail.size / self._last_samples)
        return merge_words(self.words, text.split(), overlap_words)

    def add(self, chunk: SpeechChunk, audio: Audio, text: str) -> None:
        """Record the transcript of `audio` (overlap + chunk) and keep its tail for next time."""
        self.words = self.merged(text)
        self._last_words = len(text.split())
        self._last_samples = len(audio)
        if self.start is None:
            self.start = chunk.start
        self.end = chunk.end
        if self._overlap_samples:
            self.tail = audio[-self._overlap_samples :]

    def reset(self) -> None:
        self.__init__(self._overlap_samples / SAMPLE_RATE)

    def copy(self) -> TurnTranscript:
        """An independent copy (interims stitch onto one, leaving the turn's own words alone).
        `words` is the only field changed in place; the others are replaced whole."""
        twin = copy.copy(self)
        twin.words = list(self.words)
        return twin


class InterimTranscript:
    """Tentative text of the audio buffered since the turn's last chunk, built the way chunks
    build the turn: each interim decode gets only the audio it has not seen, with the overlap
    in front, and is stitched onto the previous interim's words.

    Without this, each interim decoded everything since the last pause, up to `maxBuffer` plus
    the overlap (25 s by default) every `interimInterval` during long continuous speech: on a
    CPU a whole decode's worth of engine time, which held an engine when the pause came and
    its final was ready to run. A chunk ending or the turn ending starts it afresh from the
    turn's words; it never touches them (finals are the chunks' own)."""

    def __init__(self, turn: TurnTranscript, version: int) -> None:
        self._text = turn.copy()
        self._seen = 0  # samples of the buffer since the last chunk already decoded
        self.version = version  # the turn's version it started from; stale once that moves

    def request(self, item: Interim) -> tuple[SpeechChunk, Audio]:
        """The audio not yet decoded (as a chunk of the buffer) and what to send: it, with the
        overlap in front."""
        fresh = item.audio[self._seen :]
        start = item.start + self._seen / SAMPLE_RATE
        piece = SpeechChunk(fresh, start, item.end)
        return piece, self._text.with_overlap(fresh)

    def add(self, piece: SpeechChunk, audio: Audio, text: str) -> list[str]:
        """Stitch the decode of `audio` on; the interim's words."""
        self._text.add(piece, audio, text)
        self._seen += len(piece.audio)
        return self._text.words


class AsrStage(Stage[VadEvent, AsrOutput]):
    """A tentative transcript after each chunk and interim, the final one at each turn's end.

    Speculative decodes run beside the stage's loop (at most one at a time, the newest), and
    interim decodes likewise; a chunk that carries a speculation's id takes that result.
    """

    def __init__(
        self,
        inference: Inference,
        settings: SessionSettings,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        super().__init__(queue_size=queue_size)
        self._inference = inference
        self._turn = TurnTranscript(settings.overlap)
        self._speculation: tuple[int, asyncio.Task[str]] | None = None
        self._interim: asyncio.Task[None] | None = None
        self._interim_text: InterimTranscript | None = None  # since the last chunk, if current
        self._version = 0  # bumps whenever the turn's words change or the turn ends
        self._emitting = asyncio.Lock()

    async def handle(self, item: VadEvent) -> None:
        if isinstance(item, SpeechStart):
            await self.emit(item)
        elif isinstance(item, Speculate):
            self._drop_speculation()
            audio = self._turn.with_overlap(item.audio)
            task = asyncio.create_task(self._inference.transcribe(audio), name="speculate")
            # A dropped speculation's failure is nobody's business: mark it retrieved.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._speculation = (item.id, task)
        elif isinstance(item, Interim):
            if self._interim is None or self._interim.done():
                # What the interim stitches onto is taken now, not when its task first runs:
                # a chunk handled in between would pair this audio with the next buffer's turn.
                if self._interim_text is None or self._interim_text.version != self._version:
                    self._interim_text = InterimTranscript(self._turn, self._version)
                run = self._run_interim(item, self._interim_text)
                self._interim = asyncio.create_task(run, name="interim")
        elif isinstance(item, SpeechChunk):
            await self._chunk(item)
        else:
            await self._end_turn(item)

    async def finish(self) -> None:
        self._drop_speculation()
        await self._stop_interim()

    async def _chunk(self, chunk: SpeechChunk) -> None:
        audio = self._turn.with_overlap(chunk.audio)
        speculation = self._speculation
        if speculation is not None and speculation[0] == chunk.speculation:
            self._speculation = None
            outcome = "ready" if speculation[1].done() else "awaited"
            metrics.SPECULATIONS.labels(outcome).inc()
            text = await speculation[1]
        else:
            self._drop_speculation()
            text = await self._inference.transcribe(audio)
        async with self._emitting:
            self._turn.add(chunk, audio, text)
            self._version += 1
            if self._turn.words:
                await self.emit(self._tentative())

    async def _end_turn(self, end: EndOfTurn) -> None:
        self._drop_speculation()
        await self._stop_interim()
        async with self._emitting:
            # A flush is answered even when nothing was said: the client is waiting for it.
            if self._turn.words or end.flushed:
                await self.emit(self._final(end))
            self._turn.reset()
            self._version += 1

    async def _run_interim(self, item: Interim, interim_text: InterimTranscript) -> None:
        piece, audio = interim_text.request(item)
        if piece.audio.size == 0:
            return
        try:
            text = await self._inference.try_transcribe(audio)
        except EngineError:
            return  # an interim is a courtesy: the chunk's own decode reports engine failures
        if text is None:
            return  # the engine was busy: skipped, not queued
        async with self._emitting:
            if interim_text.version != self._version:
                return  # a chunk or the turn's end overtook it
            words = interim_text.add(piece, audio, text)
            if words:
                start = self._turn.start if self._turn.start is not None else item.start
                await self.emit(Transcript(" ".join(words), start, item.end, interim=True))

    def _tentative(self) -> Transcript:
        turn = self._turn
        return Transcript(turn.text, turn.start if turn.start is not None else 0.0, turn.end)

    def _final(self, end: EndOfTurn) -> Transcript:
        turn = self._turn
        start, stop = (turn.start or 0.0, turn.end) if turn.words else (end.time, end.time)
        return Transcript(
            turn.text,
            start,
            stop,
            is_final=True,
            is_end_of_turn=True,
            flushed=end.flushed,
            speech_end_wall=end.wall or time.monotonic(),
        )

    def _drop_speculation(self) -> None:
        if self._speculation is not None:
            metrics.SPECULATIONS.labels("discarded").inc()
            self._speculation[1].cancel()
            self._speculation = None

    async def _stop_interim(self) -> None:
        if self._interim is not None:
            self._interim.cancel()
            await asyncio.gather(self._interim, return_exceptions=True)
            self._interim = None


def record_final(transcript: Transcript) -> None:
    """The end-of-speech → final latency, as the client sees it."""
    if transcript.is_final and transcript.speech_end_wall:
        metrics.FINAL_LATENCY.observe(max(0.0, time.monotonic() - transcript.speech_end_wall))
