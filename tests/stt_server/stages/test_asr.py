from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stt_server.config import SessionSettings
from stt_server.engines.base import EngineError
from stt_server.pipeline import Stage
from stt_server.protocol import TranscriptionSegment
from stt_server.stages.asr import AsrStage, merge_words, word_key
from stt_server.stages.vad import EndOfTurn, SpeechChunk, VadEvent


class ScriptedEngine:
    """Answers each request with the next scripted text and records the audio it got."""

    def __init__(self, *texts: str | Exception) -> None:
        self.texts = list(texts)
        self.calls: list[np.ndarray] = []

    async def __call__(self, audio: np.ndarray) -> str:
        self.calls.append(audio)
        answer = self.texts.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Collect(Stage[TranscriptionSegment, None]):
    def __init__(self) -> None:
        super().__init__()
        self.items: list[TranscriptionSegment] = []

    async def handle(self, item: TranscriptionSegment) -> None:
        self.items.append(item)


def chunk(seconds: float, value: float) -> SpeechChunk:
    return SpeechChunk(np.full(int(seconds * 16000), value, dtype=np.float32))


async def run_asr(
    engine: ScriptedEngine, events: list[VadEvent], settings: SessionSettings | None = None
) -> list[TranscriptionSegment]:
    collect = Collect()
    pipeline = AsrStage(engine, settings or SessionSettings()) + collect
    pipeline.start()
    for event in events:
        await pipeline.put(event)
    await pipeline.close()
    await asyncio.wait_for(pipeline.join(), 5)
    return collect.items


def test_word_key_ignores_case_and_punctuation() -> None:
    assert word_key("Hello,") == word_key("hello") == "hello"
    assert word_key("“Don't!”") == "dont"


def test_merge_keeps_the_model_casing_and_punctuation() -> None:
    merged = merge_words(["Hello", "world,", "this", "is"], ["This", "is", "a", "TEST."])
    assert merged == ["Hello", "world,", "This", "is", "a", "TEST."]


def test_merge_without_overlap_concatenates() -> None:
    assert merge_words(["one", "two"], ["three", "four"]) == ["one", "two", "three", "four"]
    assert merge_words([], ["a"]) == ["a"]
    assert merge_words(["a"], []) == ["a"]


async def test_chunks_are_sent_with_the_last_seconds_of_the_turn_as_overlap() -> None:
    engine = ScriptedEngine("one two", "two three", "three four")
    settings = SessionSettings(overlap=0.5)
    await run_asr(engine, [chunk(1.0, 1.0), chunk(0.25, 2.0), chunk(1.0, 3.0)], settings)
    first, second, third = engine.calls
    assert np.all(first == 1.0)
    assert first.size == 16000
    # 0.5 s of the previous audio, then the new chunk.
    assert second.size == 8000 + 4000
    assert np.all(second[:8000] == 1.0)
    assert np.all(second[8000:] == 2.0)
    # The overlap is the tail of the previous request (which itself held overlap).
    assert third.size == 8000 + 16000
    assert np.all(third[:4000] == 1.0)
    assert np.all(third[4000:8000] == 2.0)


async def test_tentatives_then_final_with_end_of_turn_and_reset() -> None:
    engine = ScriptedEngine("The quick brown", "Brown fox, jumps.", "New turn here.", "here, again")
    out = await run_asr(
        engine,
        [chunk(1, 0.1), chunk(1, 0.2), EndOfTurn(), chunk(1, 0.3), chunk(1, 0.4), EndOfTurn()],
    )
    assert [(s.text, s.is_final, s.is_end_of_turn) for s in out] == [
        ("The quick brown", False, False),
        ("The quick Brown fox, jumps.", False, False),
        ("The quick Brown fox, jumps.", True, True),
        ("New turn here.", False, False),
        ("New turn here, again", False, False),
        ("New turn here, again", True, True),
    ]
    # After the end of turn nothing of the old turn is re-sent as overlap.
    assert engine.calls[2].size == 16000
    assert np.all(engine.calls[2] == np.float32(0.3))


async def test_end_of_turn_without_words_sends_nothing() -> None:
    engine = ScriptedEngine("")
    out = await run_asr(engine, [EndOfTurn(), chunk(1, 0.1), EndOfTurn(), EndOfTurn()])
    assert out == []


async def test_engine_failure_stops_the_pipeline_with_that_error() -> None:
    engine = ScriptedEngine("fine", EngineError("boom"))
    with pytest.raises(EngineError, match="boom"):
        await run_asr(engine, [chunk(1, 0.1), chunk(1, 0.2), EndOfTurn()])


@given(
    words=st.lists(st.integers(0, 10_000), min_size=2, max_size=40, unique=True),
    data=st.data(),
)
def test_merging_overlapping_pieces_restores_the_sequence(
    words: list[int], data: st.DataObject
) -> None:
    """Any split into two overlapping pieces (re-cased, re-punctuated) merges back."""
    text = [f"w{n}" for n in words]
    cut = data.draw(st.integers(1, len(text) - 1))
    overlap = data.draw(st.integers(0, cut))
    previous = text[:cut]
    new = [w.upper() + "," for w in text[cut - overlap :]]
    merged = merge_words(previous, new)
    assert [word_key(w) for w in merged] == text
    assert merged[cut:] == new[overlap:]  # words after the overlap keep the new casing
