"""Voice activity: Silero probabilities per 32 ms window → speech chunks and turn events.

`VadSegmenter` is the pure hysteresis state machine (driven by probabilities, testable without a
model); `VadStage` feeds it from the shared `VadBatcher` (stages/silero.py).

Where a chunk ends is decided the same way whether or not a decode starts early: a chunk is the
speech plus `hangover` seconds of the silence after it. That is why speculation can never change
a turn's words: the speculative decode (`Speculate`, sent once that much silence is seen) gets
exactly the audio the chunk will hold if the speaker stays silent, and its result is used only
then (the chunk carries the speculation's id).
"""

from __future__ import annotations

import enum
import itertools
import time
from dataclasses import dataclass

import numpy as np

from stt_server.audio import Audio
from stt_server.pipeline import DEFAULT_QUEUE_SIZE, Stage
from stt_server.settings import SessionSettings
from stt_server.stages.silero import WINDOW, WINDOW_SECONDS, SileroStream, VadBatcher

_EPS = 1e-9


@dataclass(frozen=True)
class Flush:
    """Command: the client says the turn is over; cut what is buffered and end the turn now.

    `wall`: the monotonic time the server received it, so the final's latency counts the time
    it waited behind the session's audio too (0: when the stage takes it)."""

    wall: float = 0.0


@dataclass(frozen=True)
class Reconfigure:
    """Command: segment the audio that follows with these settings (a client changed its turn
    detection mid-stream)."""

    settings: SessionSettings


@dataclass(frozen=True)
class SpeechStart:
    """Speech began at `time` (seconds of the session's audio)."""

    time: float


@dataclass(frozen=True)
class SpeechChunk:
    """Audio to transcribe (16 kHz mono) from `start` to `end`, cut at a pause."""

    audio: Audio
    start: float
    end: float
    speculation: int | None = None  # the `Speculate` whose audio this chunk is, if any


@dataclass(frozen=True)
class Speculate:
    """Silence began: the chunk this turn will yield if it stays silent; decode it early."""

    audio: Audio
    id: int
    start: float
    end: float


@dataclass(frozen=True)
class Interim:
    """Continuous speech: the audio buffered since the last chunk, for tentative text."""

    audio: Audio
    start: float
    end: float


@dataclass(frozen=True)
class EndOfTurn:
    """The turn ended: a large gap, a flush (`flushed`), or the end of the input.

    `time` is where speech ended (seconds of session audio); `wall` the monotonic clock at which
    the turn was known to be over from the client's point of view (end of speech, or the flush).
    """

    time: float
    flushed: bool = False
    wall: float = 0.0


VadEvent = SpeechStart | SpeechChunk | Speculate | Interim | EndOfTurn


class VadState(enum.Enum):
    INACTIVE = "inactive"
    SPEAKING = "speaking"
    SILENCE = "silence"


class VadSegmenter:
    """Hysteresis state machine over (window, speech probability) pairs.

    INACTIVE → SPEAKING at p >= speech_threshold; SPEAKING → SILENCE at p < silence_threshold;
    SILENCE → SPEAKING at p >= speech_threshold. In SILENCE, a small gap cuts a chunk once
    `min_chunk` of speech is buffered; a large gap cuts the rest (if it holds speech) and ends
    the turn, then goes INACTIVE. A buffer longer than `max_buffer` is split at the middle of its
    longest internal silence; INACTIVE keeps at most `max_leading_silence`.
    """

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self.state = VadState.INACTIVE
        self._hangover = round(settings.hangover / WINDOW_SECONDS)
        self._windows: list[Audio] = []
        self._is_speech: list[bool] = []  # one flag per buffered window
        self._first = 0  # index (in the session) of the first buffered window
        self._silence_run = 0
        self._speculation: int | None = None
        self._speculations = itertools.count(1)
        self._since_interim = 0.0

    def reconfigure(self, settings: SessionSettings) -> None:
        """Apply `settings` from the next window on; what is buffered stays."""
        self.settings = settings
        self._hangover = round(settings.hangover / WINDOW_SECONDS)

    @property
    def clock(self) -> int:
        """Windows seen so far in this session."""
        return self._first + len(self._windows)

    @property
    def buffered_seconds(self) -> float:
        return len(self._windows) * WINDOW_SECONDS

    @property
    def speech_seconds(self) -> float:
        return sum(self._is_speech) * WINDOW_SECONDS

    def push(self, window: Audio, probability: float) -> list[VadEvent]:
        s = self.settings
        speech_now = probability >= s.speech_threshold
        events: list[VadEvent] = []
        if self.state is VadState.INACTIVE:
            self._append(window, speech_now)
            if speech_now:
                self.state = VadState.SPEAKING
                self._since_interim = 0.0
                events.append(SpeechStart((self.clock - 1) * WINDOW_SECONDS))
            else:
                self._trim_leading_silence()
        elif self.state is VadState.SPEAKING:
            silent = probability < s.silence_threshold
            self._append(window, not silent)
            if silent:
                self.state = VadState.SILENCE
                self._silence_run = 1
        else:
            self._append(window, speech_now)
            if speech_now:
                self.state = VadState.SPEAKING
                self._silence_run = 0
                self._speculation = None  # the speaker went on: that audio is not the chunk
            else:
                self._silence_run += 1
        if self.state is VadState.SILENCE:
            events += self._on_silence()
        if self.state is not VadState.INACTIVE:
            events += self._interim()
        # INACTIVE buffers only leading silence (trimmed above): nothing worth transcribing.
        if self.state is not VadState.INACTIVE and self.buffered_seconds > s.max_buffer + _EPS:
            self._speculation = None
            events.append(self._take(self._split_point()))
        return events

    def flush(self, wall: float = 0.0) -> list[VadEvent]:
        """The client ended the turn: cut what is buffered (speech plus at most the hangover)
        and end the turn, whatever state the segmenter is in."""
        speech_end = (self.clock - self._silence_run) * WINDOW_SECONDS
        if self.state is VadState.SPEAKING:
            speech_end = self.clock * WINDOW_SECONDS
        events: list[VadEvent] = []
        if any(self._is_speech):
            events.append(self._take(self._cut()))
        events.append(EndOfTurn(speech_end, flushed=True, wall=wall or time.monotonic()))
        self._reset()
        return events

    def finish(self) -> list[VadEvent]:
        """Input ended: emit buffered speech and close the turn if one is open."""
        events: list[VadEvent] = []
        if self.state is not VadState.INACTIVE:
            events += self._end_turn()
        self._reset()
        return events

    def _on_silence(self) -> list[VadEvent]:
        s = self.settings
        gap = self._silence_run * WINDOW_SECONDS
        if gap >= s.large_gap - _EPS:
            return self._end_turn() if s.end_turns else self._pause()
        if gap >= s.small_gap - _EPS and self.speech_seconds >= s.min_chunk - _EPS:
            return [self._take(self._cut())]
        if (
            s.speculate
            and self._silence_run == max(self._hangover, 1)
            and self._speculation is None
            and any(self._is_speech)
        ):
            self._speculation = next(self._speculations)
            chunk = self._peek(self._cut())
            return [Speculate(chunk.audio, self._speculation, chunk.start, chunk.end)]
        return []

    def _interim(self) -> list[VadEvent]:
        interval = self.settings.interim_interval
        if interval <= 0:
            return []
        self._since_interim += WINDOW_SECONDS
        if self._since_interim < interval - _EPS or not any(self._is_speech):
            return []
        if self.state is VadState.SILENCE:
            # Due, but the speaker has paused: the speculation or the cut that follows shows
            # this audio soon, and an interim decode started now would hold the engine when
            # that final decode is ready to run (on a CPU, up to a whole decode). It is sent
            # at the first window of speech instead.
            return []
        self._since_interim = 0.0
        chunk = self._peek(len(self._windows))
        return [Interim(chunk.audio, chunk.start, chunk.end)]

    def _cut(self) -> int:
        """Where a chunk cut now ends: after the speech and at most `hangover` of silence."""
        return max(
            0, len(self._windows) - self._silence_run + min(self._silence_run, self._hangover)
        )

    def _append(self, window: Audio, is_speech: bool) -> None:
        self._windows.append(window)
        self._is_speech.append(is_speech)

    def _trim_leading_silence(self) -> None:
        keep = round(self.settings.max_leading_silence / WINDOW_SECONDS)
        excess = len(self._windows) - keep
        if excess > 0:
            del self._windows[:excess]
            del self._is_speech[:excess]
            self._first += excess

    def _end_turn(self) -> list[VadEvent]:
        speech_end = (self.clock - self._silence_run) * WINDOW_SECONDS
        events: list[VadEvent] = []
        if any(self._is_speech):
            events.append(self._take(self._cut()))
        # The client's clock: the end of speech was `silence` ago, if the audio came in real time.
        silence = self.clock * WINDOW_SECONDS - speech_end
        events.append(EndOfTurn(speech_end, wall=time.monotonic() - silence))
        self._reset()
        return events

    def _pause(self) -> list[VadEvent]:
        """A large gap when only the client ends turns: cut the speech, keep the turn open."""
        events: list[VadEvent] = []
        if any(self._is_speech):
            events.append(self._take(self._cut()))
        self.state = VadState.INACTIVE
        self._silence_run = 0
        self._speculation = None
        self._trim_leading_silence()
        return events

    def _peek(self, end: int) -> SpeechChunk:
        audio = np.concatenate(self._windows[:end]) if end else np.zeros(0, np.float32)
        start = self._first * WINDOW_SECONDS
        return SpeechChunk(
            audio.astype(np.float32, copy=False), start, start + end * WINDOW_SECONDS
        )

    def _take(self, end: int) -> SpeechChunk:
        """Remove the first `end` windows from the buffer and return them as a chunk."""
        chunk = self._peek(end)
        if self._speculation is not None:
            chunk = SpeechChunk(chunk.audio, chunk.start, chunk.end, self._speculation)
            self._speculation = None
        del self._windows[:end]
        del self._is_speech[:end]
        self._first += end
        self._since_interim = 0.0
        return chunk

    def _split_point(self) -> int:
        """Middle of the longest silent run after the first speech window (or the whole buffer)."""
        best_start, best_len = len(self._windows), 0
        run_start: int | None = None
        seen_speech = False
        for i, speech in enumerate([*self._is_speech, True]):
            if speech:
                if run_start is not None and seen_speech and i - run_start > best_len:
                    best_start, best_len = run_start, i - run_start
                run_start = None
                seen_speech = True
            elif run_start is None:
                run_start = i
        if best_len == 0:
            return len(self._windows)
        return best_start + best_len // 2

    def _reset(self) -> None:
        self.state = VadState.INACTIVE
        self._first += len(self._windows)
        self._windows.clear()
        self._is_speech.clear()
        self._silence_run = 0
        self._speculation = None
        self._since_interim = 0.0


class VadStage(Stage[Audio | Flush | Reconfigure, VadEvent]):
    """16 kHz mono audio of any length (and flush and reconfigure commands) in, turn events
    out."""

    def __init__(
        self,
        batcher: VadBatcher,
        settings: SessionSettings,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        super().__init__(queue_size=queue_size)
        self._batcher = batcher
        self._stream = SileroStream()
        self._segmenter = VadSegmenter(settings)
        self._pending = np.zeros(0, dtype=np.float32)

    async def handle(self, item: Audio | Flush | Reconfigure) -> None:
        if isinstance(item, Reconfigure):
            # Windows already pending were sent under the old settings.
            await self._run_pending(pad=False)
            self._segmenter.reconfigure(item.settings)
            return
        if isinstance(item, Flush):
            wall = item.wall or time.monotonic()
            await self._run_pending(pad=True)
            for event in self._segmenter.flush(wall):
                await self.emit(event)
            return
        self._pending = np.concatenate([self._pending, item])
        await self._run_pending(pad=False)

    async def finish(self) -> None:
        await self._run_pending(pad=True)
        for event in self._segmenter.finish():
            await self.emit(event)

    async def _run_pending(self, *, pad: bool) -> None:
        """Run the whole windows pending; with `pad`, a last partial one padded with zeros, so
        no audio the client sent is left out of a turn that ends now."""
        if pad and len(self._pending) % WINDOW:
            padding = WINDOW - len(self._pending) % WINDOW
            self._pending = np.concatenate([self._pending, np.zeros(padding, np.float32)])
        count = len(self._pending) // WINDOW
        if count == 0:
            return
        windows = self._pending[: count * WINDOW].reshape(count, WINDOW)
        self._pending = self._pending[count * WINDOW :]
        probs = await self._batcher.probabilities(self._stream, windows)
        for window, prob in zip(windows, probs, strict=True):
            for event in self._segmenter.push(window, prob):
                await self.emit(event)
