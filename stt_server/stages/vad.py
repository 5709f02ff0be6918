"""Voice activity: Silero probabilities per 32 ms window → speech chunks and end-of-turn events.

`VadSegmenter` is the pure hysteresis state machine (driven by probabilities, testable without
a model); `SileroVad` runs one session's windows through the model on its own; `VadStage` ties
the segmenter to the shared `VadBatcher` (stages/vad_batching.py), which runs the windows of all
sessions of a tick as one batch off the event loop, each session keeping its own state.
"""

from __future__ import annotations

import enum
import importlib.resources
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnxruntime

from stt_server.audio import SAMPLE_RATE, Audio
from stt_server.config import SessionSettings
from stt_server.pipeline import DEFAULT_QUEUE_SIZE, Stage
from stt_server.stages.vad_batching import CONTEXT, WINDOW, SileroStream, VadBatcher

__all__ = ["CONTEXT", "WINDOW", "SileroModel", "SileroVad", "VadSegmenter", "VadStage"]


@dataclass(frozen=True)
class SpeechChunk:
    """Audio to transcribe (16 kHz mono), cut at a pause."""

    audio: Audio


@dataclass(frozen=True)
class EndOfTurn:
    """The speaker paused for at least the large gap."""


VadEvent = SpeechChunk | EndOfTurn


class VadState(enum.Enum):
    INACTIVE = "inactive"
    SPEAKING = "speaking"
    SILENCE = "silence"


class VadSegmenter:
    """Hysteresis state machine over (window, speech probability) pairs.

    INACTIVE → SPEAKING at p >= speech_threshold; SPEAKING → SILENCE at p < silence_threshold;
    SILENCE → SPEAKING at p >= speech_threshold. In SILENCE, a small gap emits the buffer as a
    chunk once it holds at least `min_chunk` of speech; a large gap emits the buffer (if it holds
    speech) and an end of turn, then goes INACTIVE. A buffer longer than `max_buffer` is split at
    the middle of its longest internal silence; INACTIVE keeps at most `max_leading_silence`.
    """

    def __init__(
        self, settings: SessionSettings, *, window: int = WINDOW, rate: int = SAMPLE_RATE
    ) -> None:
        self.settings = settings
        self.state = VadState.INACTIVE
        self._window_s = window / rate
        self._windows: list[Audio] = []
        self._is_speech: list[bool] = []  # one flag per buffered window
        self._silence_run = 0

    @property
    def buffered_seconds(self) -> float:
        return len(self._windows) * self._window_s

    @property
    def speech_seconds(self) -> float:
        return sum(self._is_speech) * self._window_s

    def push(self, window: Audio, probability: float) -> list[VadEvent]:
        s = self.settings
        speech_now = probability >= s.speech_threshold
        events: list[VadEvent] = []
        if self.state is VadState.INACTIVE:
            self._append(window, speech_now)
            if speech_now:
                self.state = VadState.SPEAKING
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
            else:
                self._silence_run += 1
                gap = self._silence_run * self._window_s
                if gap >= s.large_gap - 1e-9:
                    events += self._end_turn()
                elif gap >= s.small_gap - 1e-9 and self.speech_seconds >= s.min_chunk - 1e-9:
                    events.append(self._take(len(self._windows)))
        # INACTIVE buffers only leading silence (trimmed above): nothing worth transcribing.
        if self.state is not VadState.INACTIVE and self.buffered_seconds > s.max_buffer + 1e-9:
            events.append(self._take(self._split_point()))
        return events

    def finish(self) -> list[VadEvent]:
        """Input ended: emit buffered speech and close the turn if one is open."""
        events: list[VadEvent] = []
        if self.state is not VadState.INACTIVE:
            events += self._end_turn()
        self._reset()
        return events

    def _append(self, window: Audio, is_speech: bool) -> None:
        self._windows.append(window)
        self._is_speech.append(is_speech)

    def _trim_leading_silence(self) -> None:
        keep = round(self.settings.max_leading_silence / self._window_s)
        excess = len(self._windows) - keep
        if excess > 0:
            del self._windows[:excess]
            del self._is_speech[:excess]

    def _end_turn(self) -> list[VadEvent]:
        events: list[VadEvent] = []
        if any(self._is_speech):
            # Drop trailing silence beyond the small gap: it carries no words.
            keep_silence = round(self.settings.small_gap / self._window_s)
            end = len(self._windows) - max(0, self._silence_run - keep_silence)
            events.append(self._take(end))
        events.append(EndOfTurn())
        self._reset()
        return events

    def _take(self, end: int) -> SpeechChunk:
        """Remove the first `end` windows from the buffer and return them as a chunk."""
        chunk = SpeechChunk(np.concatenate(self._windows[:end]).astype(np.float32, copy=False))
        del self._windows[:end]
        del self._is_speech[:end]
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
        self._windows.clear()
        self._is_speech.clear()
        self._silence_run = 0


class SileroModel:
    """The Silero VAD ONNX network, loaded once and shared; it holds no per-session state."""

    def __init__(self) -> None:
        path = importlib.resources.files("silero_vad") / "data" / "silero_vad.onnx"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )


class SileroVad:
    """One session's Silero state: sharing it between sessions would mix their audio history."""

    def __init__(self, model: SileroModel) -> None:
        self._session = model.session
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._rate = np.array(SAMPLE_RATE, dtype=np.int64)

    def probabilities(self, windows: npt.NDArray[np.float32]) -> list[float]:
        """Speech probability of each row of `windows` (shape (n, 512)), in order."""
        probs: list[float] = []
        for window in windows:
            x = np.concatenate([self._context, window])[None, :]
            out, state = self._session.run(
                None, {"input": x, "state": self._state, "sr": self._rate}
            )
            self._state = np.asarray(state, dtype=np.float32)
            self._context = x[0, -CONTEXT:]
            probs.append(float(np.asarray(out).reshape(-1)[0]))
        return probs


class VadStage(Stage[Audio, VadEvent]):
    """16 kHz mono audio of any length in, speech chunks and end-of-turn events out."""

    def __init__(
        self, model: SileroModel, settings: SessionSettings, *, queue_size: int = DEFAULT_QUEUE_SIZE
    ) -> None:
        super().__init__(queue_size=queue_size)
        self._model = model
        self._stream = SileroStream()
        self._segmenter = VadSegmenter(settings)
        self._pending = np.zeros(0, dtype=np.float32)

    async def handle(self, item: Audio) -> None:
        self._pending = np.concatenate([self._pending, item])
        count = len(self._pending) // WINDOW
        if count == 0:
            return
        windows = self._pending[: count * WINDOW].reshape(count, WINDOW)
        self._pending = self._pending[count * WINDOW :]
        batcher = VadBatcher.for_loop(self._model.session)
        probs = await batcher.probabilities(self._stream, windows)
        for window, prob in zip(windows, probs, strict=True):
            for event in self._segmenter.push(window, prob):
                await self.emit(event)

    async def finish(self) -> None:
        for event in self._segmenter.finish():
            await self.emit(event)
