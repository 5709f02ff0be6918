from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from stt_server.pipeline import Stage
from stt_server.settings import SessionSettings
from stt_server.stages.silero import WINDOW, SileroModel, SileroStream, VadBatcher
from stt_server.stages.vad import (
    EndOfTurn,
    Flush,
    Interim,
    Speculate,
    SpeechChunk,
    SpeechStart,
    VadEvent,
    VadSegmenter,
    VadStage,
    VadState,
)
from tests.stt_server.speech import Recording

SPEECH, SILENCE = 0.9, 0.1
WINDOW_S = WINDOW / 16000


def window(index: int) -> np.ndarray:
    """A window whose samples all equal its index, so chunks show which windows they hold."""
    return np.full(WINDOW, index, dtype=np.float32)


def window_ids(chunk: SpeechChunk) -> list[int]:
    return [int(v) for v in chunk.audio[::WINDOW]]


# The cutting rules alone: no early decodes, no interims (each has its own tests below).
PLAIN = SessionSettings(speculate=False, interim_interval=0.0, hangover=0.3)


class Driver:
    """Feeds scripted probabilities to a segmenter, numbering windows and recording events
    (all of them in `all_events`; chunks and ends of turn in `events`)."""

    def __init__(self, settings: SessionSettings | None = None) -> None:
        self.segmenter = VadSegmenter(settings or PLAIN)
        self.all_events: list[tuple[int, VadEvent]] = []
        self.count = 0
        self.events: list[tuple[int, VadEvent]] = []  # (index of the window that fired, event)

    def feed(self, probability: float, times: int = 1) -> list[VadEvent]:
        fired: list[VadEvent] = []
        for _ in range(times):
            for event in self.segmenter.push(window(self.count), probability):
                self.all_events.append((self.count, event))
                if isinstance(event, SpeechChunk | EndOfTurn):
                    self.events.append((self.count, event))
                    fired.append(event)
            self.count += 1
        return fired


def test_inactive_becomes_speaking_at_the_speech_threshold() -> None:
    d = Driver()
    d.feed(0.49, 5)
    assert d.segmenter.state is VadState.INACTIVE
    d.feed(0.5)
    assert d.segmenter.state is VadState.SPEAKING


def test_hysteresis_between_the_two_thresholds() -> None:
    d = Driver()
    d.feed(SPEECH)
    d.feed(0.4)  # below 0.5 but not below 0.35: still speaking
    assert d.segmenter.state is VadState.SPEAKING
    d.feed(0.34)
    assert d.segmenter.state is VadState.SILENCE
    d.feed(0.45)  # above 0.35 but not 0.5: still silence
    assert d.segmenter.state is VadState.SILENCE
    d.feed(0.5)
    assert d.segmenter.state is VadState.SPEAKING


def test_small_gap_emits_the_buffer_once_a_second_of_speech_is_buffered() -> None:
    d = Driver()
    d.feed(SPEECH, 40)  # 1.28 s
    d.feed(SILENCE, 9)  # 0.288 s < 0.3 s
    assert d.events == []
    fired = d.feed(SILENCE)  # 0.32 s of silence
    assert len(fired) == 1
    assert isinstance(fired[0], SpeechChunk)
    # The speech and the hangover (0.3 s: 9 windows) of the silence after it.
    assert window_ids(fired[0]) == list(range(49))
    assert d.segmenter.state is VadState.SILENCE  # the turn goes on


def test_small_gap_waits_until_enough_speech() -> None:
    d = Driver()
    d.feed(SPEECH, 20)  # 0.64 s: too short for a chunk
    d.feed(SILENCE, 12)
    assert d.events == []
    d.feed(SPEECH, 12)  # now 1.02 s of speech in the buffer
    fired = d.feed(SILENCE, 10)
    assert len(fired) == 1
    assert isinstance(fired[0], SpeechChunk)
    assert window_ids(fired[0]) == list(range(44 + 9))


def test_large_gap_emits_speech_and_end_of_turn_then_goes_inactive() -> None:
    d = Driver()
    d.feed(SPEECH, 20)  # short utterance, never reaches the small-gap minimum
    d.feed(SILENCE, 46)  # 1.472 s
    assert d.events == []
    fired = d.feed(SILENCE)  # 1.504 s >= 1.5 s
    assert [type(e) for e in fired] == [SpeechChunk, EndOfTurn]
    chunk = fired[0]
    assert isinstance(chunk, SpeechChunk)
    ids = window_ids(chunk)
    assert ids[:20] == list(range(20))
    # Trailing silence beyond the small gap carries no words and is dropped.
    assert (len(ids) - 20) * WINDOW_S <= 0.3 + WINDOW_S
    assert d.segmenter.state is VadState.INACTIVE


def test_large_gap_after_a_chunk_sends_only_the_end_of_turn() -> None:
    d = Driver()
    d.feed(SPEECH, 40)
    d.feed(SILENCE, 47)
    kinds = [(i, type(e)) for i, e in d.events]
    assert kinds == [(49, SpeechChunk), (86, EndOfTurn)]


def test_one_end_of_turn_per_long_pause_and_none_without_speech() -> None:
    d = Driver()
    d.feed(SILENCE, 300)
    assert d.events == []
    for _ in range(3):
        d.feed(SPEECH, 40)
        d.feed(SILENCE, 60)
    assert sum(isinstance(e, EndOfTurn) for _, e in d.events) == 3


def test_buffer_is_split_at_the_middle_of_its_longest_internal_silence() -> None:
    settings = SessionSettings(min_chunk=30.0, max_buffer=2.0)  # small gaps never emit
    d = Driver(settings)
    d.feed(SILENCE, 4)  # leading silence: not internal
    d.feed(SPEECH, 10)
    d.feed(SILENCE, 3)  # internal silence, 3 windows (indices 14..16)
    d.feed(SPEECH, 10)
    d.feed(SILENCE, 6)  # longest internal silence (indices 27..32)
    d.feed(SPEECH, 29)  # 62 windows = 1.984 s, not over the limit yet
    assert d.events == []
    fired = d.feed(SPEECH)  # 63 windows = 2.016 s > 2.0 s
    assert len(fired) == 1
    assert isinstance(fired[0], SpeechChunk)
    assert window_ids(fired[0]) == list(range(30))  # cut at 27 + 6 // 2
    assert d.segmenter.buffered_seconds == pytest.approx(33 * WINDOW_S)


def test_buffer_without_silence_is_emitted_whole_when_too_long() -> None:
    d = Driver(SessionSettings(max_buffer=2.0))
    d.feed(SPEECH, 62)
    assert d.events == []
    fired = d.feed(SPEECH)
    assert len(fired) == 1
    assert isinstance(fired[0], SpeechChunk)
    assert window_ids(fired[0]) == list(range(63))
    assert d.segmenter.buffered_seconds == 0


def test_leading_silence_is_trimmed_to_three_seconds() -> None:
    d = Driver()
    d.feed(SILENCE, 200)  # 6.4 s of silence before anyone speaks
    d.feed(SPEECH, 40)
    fired = d.feed(SILENCE, 10)
    assert isinstance(fired[0], SpeechChunk)
    ids = window_ids(fired[0])
    leading = [i for i in ids if i < 200]
    assert leading == list(range(200 - len(leading), 200))
    assert len(leading) * WINDOW_S == pytest.approx(3.0, abs=WINDOW_S)


def test_settings_change_the_rules() -> None:
    d = Driver(SessionSettings(small_gap=0.1, large_gap=0.5, min_chunk=0.2))
    d.feed(SPEECH, 8)  # 0.256 s
    d.feed(SILENCE, 16)  # 0.512 s
    kinds = [(i, type(e)) for i, e in d.events]
    assert kinds == [(11, SpeechChunk), (23, EndOfTurn)]


def test_finish_flushes_an_open_turn() -> None:
    d = Driver()
    d.feed(SPEECH, 20)
    events = d.segmenter.finish()
    assert [type(e) for e in events] == [SpeechChunk, EndOfTurn]
    assert d.segmenter.finish() == []


@pytest.fixture(scope="module")
def silero() -> SileroModel:
    return SileroModel()


def probabilities(silero: SileroModel, windows: np.ndarray) -> list[float]:
    async def run() -> list[float]:
        batcher = VadBatcher(silero)
        try:
            return await batcher.probabilities(SileroStream(), windows)
        finally:
            await batcher.stop()

    return asyncio.run(run())


def test_vad_state_is_per_session(silero: SileroModel, recording: Recording) -> None:
    """Interleaving two sessions on one model gives each the probabilities it gets alone."""
    n = 200
    a = recording.audio[: n * WINDOW].reshape(n, WINDOW)
    b = recording.audio[-n * WINDOW :].reshape(n, WINDOW)
    alone_a = probabilities(silero, a)
    alone_b = probabilities(silero, b)

    async def interleaved() -> tuple[list[float], list[float]]:
        batcher = VadBatcher(silero)
        stream_a, stream_b = SileroStream(), SileroStream()
        mixed_a: list[float] = []
        mixed_b: list[float] = []
        for i in range(n):
            mixed_a += await batcher.probabilities(stream_a, a[i : i + 1])
            mixed_b += await batcher.probabilities(stream_b, b[i : i + 1])
        await batcher.stop()
        return mixed_a, mixed_b

    mixed_a, mixed_b = asyncio.run(interleaved())
    assert mixed_a == pytest.approx(alone_a, abs=1e-6)
    assert mixed_b == pytest.approx(alone_b, abs=1e-6)
    assert max(alone_a) > 0.5  # the recording does contain speech


def test_real_silero_cuts_in_the_pauses(silero: SileroModel, recording: Recording) -> None:
    """Chunks end inside pauses; exactly one end of turn in each long pause."""
    segmenter = VadSegmenter(SessionSettings())
    count = len(recording.audio) // WINDOW
    windows = recording.audio[: count * WINDOW].reshape(count, WINDOW)
    fired: list[tuple[float, VadEvent]] = []
    for i, (w, p) in enumerate(zip(windows, probabilities(silero, windows), strict=True)):
        for e in segmenter.push(w, p):
            if isinstance(e, SpeechChunk | EndOfTurn):  # cuts (early decodes may come mid-word-gap)
                fired.append(((i + 1) * WINDOW_S, e))

    spans = recording.spans
    pauses = [(end, end + pause) for (_, end), pause in zip(spans, recording.pauses, strict=True)]

    def pause_at(t: float) -> int | None:
        return next((k for k, (lo, hi) in enumerate(pauses) if lo <= t <= hi), None)

    for t, event in fired:
        assert pause_at(t) is not None, f"{type(event).__name__} at {t:.2f}s is not in a pause"
    ends = [pause_at(t) for t, e in fired if isinstance(e, EndOfTurn)]
    long_pauses = [k for k, p in enumerate(recording.pauses) if p >= 1.5]
    assert ends == long_pauses
    # Every sentence is followed by a cut: a chunk in each short pause, chunk + end in long ones.
    chunk_pauses = {pause_at(t) for t, e in fired if isinstance(e, SpeechChunk)}
    assert chunk_pauses == set(range(len(spans)))


class Collect(Stage[VadEvent, None]):
    def __init__(self) -> None:
        super().__init__()
        self.items: list[VadEvent] = []

    async def handle(self, item: VadEvent) -> None:
        self.items.append(item)


async def test_vad_stage_streams_frames(silero: SileroModel, recording: Recording) -> None:
    collect = Collect()
    batcher = VadBatcher(silero)
    pipeline = VadStage(batcher, SessionSettings(), queue_size=4) + collect
    pipeline.start()
    for offset in range(0, len(recording.audio), 320):  # 20 ms frames
        await pipeline.put(recording.audio[offset : offset + 320])
    await pipeline.close()
    await asyncio.wait_for(pipeline.join(), 30)
    await batcher.stop()
    kinds = [type(e) for e in collect.items]
    assert kinds.count(EndOfTurn) == 3
    assert kinds.count(SpeechChunk) == 5
    speech = sum(end - start for start, end in recording.spans)
    chunked = sum(e.audio.size for e in collect.items if isinstance(e, SpeechChunk)) / 16000
    assert chunked >= speech


def test_leading_silence_longer_than_the_buffer_limit_is_never_sent() -> None:
    d = Driver(SessionSettings(max_buffer=2.0, max_leading_silence=10.0))
    d.feed(SILENCE, 400)  # 12.8 s of silence
    assert d.events == []
    assert d.segmenter.buffered_seconds == pytest.approx(10.0, abs=WINDOW_S)


def test_speculation_gets_exactly_the_audio_the_chunk_will_hold() -> None:
    d = Driver(SessionSettings(interim_interval=0.0))  # hangover 0.1 s: 3 windows
    d.feed(SPEECH, 20)
    d.feed(SILENCE, 2)
    assert not any(isinstance(e, Speculate) for _, e in d.all_events)
    d.feed(SILENCE)  # the third silent window: the hangover is complete
    speculations = [e for _, e in d.all_events if isinstance(e, Speculate)]
    assert len(speculations) == 1
    d.feed(SILENCE, 44)  # to the large gap
    chunk, end = (e for _, e in d.events)
    assert isinstance(chunk, SpeechChunk)
    assert isinstance(end, EndOfTurn)
    assert chunk.speculation == speculations[0].id
    assert np.array_equal(chunk.audio, speculations[0].audio)
    assert window_ids(chunk) == list(range(23))
    assert end.time == pytest.approx(20 * WINDOW_S)


def test_speech_resuming_voids_the_speculation() -> None:
    d = Driver(SessionSettings(interim_interval=0.0))
    d.feed(SPEECH, 20)
    d.feed(SILENCE, 4)  # speculation sent
    d.feed(SPEECH, 10)  # ...but the speaker goes on
    d.feed(SILENCE, 4)  # a second speculation, for the longer chunk
    d.feed(SILENCE, 44)
    first, second = (e for _, e in d.all_events if isinstance(e, Speculate))
    chunk = next(e for _, e in d.events if isinstance(e, SpeechChunk))
    assert chunk.speculation == second.id != first.id
    assert np.array_equal(chunk.audio, second.audio)
    assert window_ids(chunk) == list(range(20 + 4 + 10 + 3))


def test_interims_come_every_interval_during_continuous_speech() -> None:
    d = Driver(SessionSettings(interim_interval=0.5, speculate=False))
    d.feed(SPEECH, 100)  # 3.2 s without a pause
    interims = [(i, e) for i, e in d.all_events if isinstance(e, Interim)]
    assert len(interims) == 6  # every 0.5 s (16 windows)
    assert [i for i, _ in interims] == [15, 31, 47, 63, 79, 95]
    last = interims[-1][1]
    assert window_ids(SpeechChunk(last.audio, 0, 0)) == list(range(96))
    starts = [e for _, e in d.all_events if isinstance(e, SpeechStart)]
    assert starts == [SpeechStart(0.0)]


def test_an_interim_due_in_a_pause_waits_for_the_next_speech() -> None:
    d = Driver(SessionSettings(interim_interval=0.5, speculate=False))
    d.feed(SPEECH, 12)
    d.feed(SILENCE, 8)  # the interim falls due at window 15, inside this 0.26 s pause
    assert not any(isinstance(e, Interim) for _, e in d.all_events)
    d.feed(SPEECH, 3)
    interims = [(i, e) for i, e in d.all_events if isinstance(e, Interim)]
    assert [i for i, _ in interims] == [20]  # the first window of speech after the pause
    assert window_ids(SpeechChunk(interims[0][1].audio, 0, 0)) == list(range(21))


def test_flush_cuts_at_once_and_ends_the_turn() -> None:
    d = Driver()
    d.feed(SILENCE, 5)
    d.feed(SPEECH, 30)
    d.feed(SILENCE, 2)
    events = d.segmenter.flush(wall=123.0)
    assert [type(e) for e in events] == [SpeechChunk, EndOfTurn]
    chunk, end = events
    assert isinstance(chunk, SpeechChunk)
    assert isinstance(end, EndOfTurn)
    assert window_ids(chunk) == list(range(37))
    assert end.flushed
    assert end.wall == 123.0
    assert end.time == pytest.approx(35 * WINDOW_S)
    assert d.segmenter.state is VadState.INACTIVE
    # Nothing buffered: the flush still ends the turn (the client waits for its answer).
    assert [type(e) for e in d.segmenter.flush()] == [EndOfTurn]


async def test_vad_stage_flush_transcribes_the_last_partial_window(silero: SileroModel) -> None:
    collect = Collect()
    batcher = VadBatcher(silero)
    pipeline = VadStage(batcher, SessionSettings()) + collect
    pipeline.start()
    await pipeline.put(np.zeros(WINDOW * 3 + 100, np.float32))
    await pipeline.put(Flush(wall=42.0))  # received then: the turn was over for the client
    before = time.monotonic()
    await pipeline.put(Flush())  # no receipt time: when the stage takes it
    await pipeline.close()
    await asyncio.wait_for(pipeline.join(), 30)
    await batcher.stop()
    assert [type(e) for e in collect.items] == [EndOfTurn, EndOfTurn]
    first, second = collect.items
    assert isinstance(first, EndOfTurn)
    assert isinstance(second, EndOfTurn)
    assert first.flushed
    assert second.flushed
    assert first.wall == 42.0
    assert second.wall >= before  # stamped when the stage took it


def test_without_end_turns_a_large_gap_cuts_but_only_a_flush_ends_the_turn() -> None:
    d = Driver(PLAIN.model_copy(update={"end_turns": False}))
    d.feed(SPEECH, 20)
    d.feed(SILENCE, 200)  # 6.4 s: far past the large gap
    assert [type(e) for _, e in d.events] == [SpeechChunk]
    chunk = d.events[0][1]
    assert isinstance(chunk, SpeechChunk)
    assert window_ids(chunk) == list(range(20 + 9))  # the speech and the hangover
    assert d.segmenter.state is VadState.INACTIVE
    d.feed(SPEECH, 10)
    d.feed(SILENCE, 100)
    fired = d.segmenter.flush()
    assert [type(e) for _, e in d.events] == [SpeechChunk, SpeechChunk]
    assert [type(e) for e in fired] == [EndOfTurn]


def test_reconfigure_applies_to_the_windows_that_follow() -> None:
    d = Driver()
    d.feed(SPEECH, 20)
    d.segmenter.reconfigure(PLAIN.model_copy(update={"large_gap": 0.5}))
    d.feed(SILENCE, 15)  # 0.48 s
    assert d.events == []
    fired = d.feed(SILENCE)  # 0.512 s >= 0.5 s
    assert [type(e) for e in fired] == [SpeechChunk, EndOfTurn]
