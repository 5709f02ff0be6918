from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stt_server import metrics
from stt_server.errors import EngineError
from stt_server.pipeline import Stage
from stt_server.settings import SessionSettings
from stt_server.stages.asr import AsrOutput, AsrStage, Transcript, merge_words, word_key
from stt_server.stages.vad import EndOfTurn, Interim, Speculate, SpeechChunk, VadEvent
from tests.support.engines import ScriptedInference


class Collect(Stage[AsrOutput, None]):
    def __init__(self) -> None:
        super().__init__()
        self.items: list[Transcript] = []

    async def handle(self, item: AsrOutput) -> None:
        if isinstance(item, Transcript):
            self.items.append(item)


def chunk(seconds: float, value: float, speculation: int | None = None) -> SpeechChunk:
    return SpeechChunk(
        np.full(int(seconds * 16000), value, dtype=np.float32), 0.0, seconds, speculation
    )


async def run_asr(
    engine: ScriptedInference,
    events: list[VadEvent | float],
    settings: SessionSettings | None = None,
) -> list[Transcript]:
    """Feed `events` to an ASR stage (a float: pause that many seconds) and collect its
    transcripts."""
    collect = Collect()
    pipeline = AsrStage(engine, settings or SessionSettings()) + collect
    pipeline.start()
    for event in events:
        if isinstance(event, float):
            await asyncio.sleep(event)
        else:
            await pipeline.put(event)
    await pipeline.close()
    await asyncio.wait_for(pipeline.join(), 5)
    return collect.items


def test_word_key_ignores_case_and_punctuation() -> None:
    assert word_key("Hello,") == word_key("hello") == "hello"
    assert word_key("“Don't!”") == "dont"


def test_merge_keeps_the_model_casing_and_punctuation() -> None:
    merged = merge_words(["Hello", "world,", "this", "is"], ["This", "is", "a", "TEST."])
    # "This" was capitalised only because the new transcript began there: undone at the join.
    assert merged == ["Hello", "world,", "this", "is", "a", "TEST."]


def test_merge_without_overlap_concatenates() -> None:
    assert merge_words(["one", "two"], ["three", "four"]) == ["one", "two", "three", "four"]
    assert merge_words([], ["a"]) == ["a"]
    assert merge_words(["a"], []) == ["a"]


async def test_chunks_are_sent_with_the_last_seconds_of_the_turn_as_overlap() -> None:
    engine = ScriptedInference("one two", "two three", "three four")
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
    engine = ScriptedInference(
        "The quick brown", "Brown fox, jumps.", "New turn here.", "here, again"
    )
    out = await run_asr(
        engine,
        [
            chunk(1, 0.1),
            chunk(1, 0.2),
            EndOfTurn(0.0),
            chunk(1, 0.3),
            chunk(1, 0.4),
            EndOfTurn(0.0),
        ],
    )
    assert [(s.text, s.is_final, s.is_end_of_turn) for s in out] == [
        ("The quick brown", False, False),
        ("The quick brown fox, jumps.", False, False),
        ("The quick brown fox, jumps.", True, True),
        ("New turn here.", False, False),
        ("New turn here, again", False, False),
        ("New turn here, again", True, True),
    ]
    # After the end of turn nothing of the old turn is re-sent as overlap.
    assert engine.calls[2].size == 16000
    assert np.all(engine.calls[2] == np.float32(0.3))


async def test_end_of_turn_without_words_sends_nothing() -> None:
    engine = ScriptedInference("")
    out = await run_asr(engine, [EndOfTurn(0.0), chunk(1, 0.1), EndOfTurn(0.0), EndOfTurn(0.0)])
    assert out == []


async def test_a_flush_is_answered_even_without_words() -> None:
    out = await run_asr(ScriptedInference(), [EndOfTurn(2.0, flushed=True)])
    assert [(t.text, t.is_final, t.flushed, t.start, t.end) for t in out] == [
        ("", True, True, 2.0, 2.0)
    ]


async def test_engine_failure_stops_the_pipeline_with_that_error() -> None:
    engine = ScriptedInference("fine", EngineError("boom"))
    with pytest.raises(EngineError, match="boom"):
        await run_asr(engine, [chunk(1, 0.1), chunk(1, 0.2), EndOfTurn(0.0)])


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
    assert merged[cut + 1 :] == new[overlap + 1 :]  # words after the join keep the new casing


def speculate(seconds: float, value: float, ident: int) -> Speculate:
    return Speculate(np.full(int(seconds * 16000), value, dtype=np.float32), ident, 0.0, seconds)


def speculations() -> dict[str, float]:
    return {
        outcome: metrics.REGISTRY.get_sample_value(
            "stt_speculative_decodes_total", {"outcome": outcome}
        )
        or 0.0
        for outcome in ("ready", "awaited", "discarded")
    }


def grown(before: dict[str, float]) -> dict[str, float]:
    return {k: v - before[k] for k, v in speculations().items() if v != before[k]}


async def test_a_chunk_takes_its_speculative_decode() -> None:
    engine = ScriptedInference("Hello there.")
    before = speculations()
    events: list[VadEvent | float] = [speculate(1, 0.1, 7), 0.05]
    out = await run_asr(engine, [*events, chunk(1, 0.1, speculation=7), EndOfTurn(1)])
    assert len(engine.calls) == 1  # decoded once, early
    assert [(t.text, t.is_final) for t in out] == [("Hello there.", False), ("Hello there.", True)]
    assert grown(before) == {"ready": 1}  # done before its chunk was cut
    slow = ScriptedInference("Hello there.", hold=0.2)
    before = speculations()
    await run_asr(slow, [speculate(1, 0.1, 7), chunk(1, 0.1, speculation=7), EndOfTurn(1)])
    assert len(slow.calls) == 1
    assert grown(before) == {"awaited": 1}


async def test_speech_resuming_discards_the_speculation() -> None:
    """The speaker went on after the speculative decode started: the chunk that follows is
    decoded afresh, and the turn's words are those of the run without speculation."""
    settings = SessionSettings(overlap=0.0)
    plain = await run_asr(
        ScriptedInference("one two three"), [chunk(2, 0.2), EndOfTurn(2)], settings
    )
    engine = ScriptedInference("one two", "one two three", hold=0.05)
    before = speculations()
    spec = await run_asr(
        engine, [speculate(1, 0.1, 1), 0.01, chunk(2, 0.2), EndOfTurn(2)], settings
    )
    assert [t.text for t in spec] == [t.text for t in plain] == ["one two three"] * 2
    assert engine.calls[1].size == 32000  # the chunk itself, not the speculative audio
    assert grown(before) == {"discarded": 1}


async def test_interims_while_speaking_and_none_after_the_turn() -> None:
    engine = ScriptedInference("so what", "so what do we")
    interim = Interim(np.full(16000, 0.1, np.float32), 0.0, 1.0)
    out = await run_asr(engine, [interim, 0.05, chunk(2, 0.1), EndOfTurn(2)])
    assert [(t.text, t.interim, t.is_final) for t in out] == [
        ("so what", True, False),
        ("so what do we", False, False),
        ("so what do we", False, True),
    ]


def tone(*parts: tuple[float, float]) -> np.ndarray:
    """Audio made of (seconds, value) runs, so a test can tell which part a request held."""
    return np.concatenate([np.full(int(sec * 16000), v, np.float32) for sec, v in parts])


async def test_an_interim_decodes_only_new_audio_behind_the_overlap() -> None:
    """During continuous speech each interim sends what the last one did not see, with the
    overlap in front, and is stitched on: its cost stays bounded however long the speaker
    talks without a pause (it used to be the whole buffer since the last pause)."""
    settings = SessionSettings(overlap=1.0)
    first = tone((2.0, 0.1))
    second = tone((2.0, 0.1), (1.5, 0.2))
    third = tone((2.0, 0.1), (1.5, 0.2), (1.5, 0.3))
    engine = ScriptedInference("One two", "two three", "Three four.", "one two three four five")
    out = await run_asr(
        engine,
        [
            Interim(first, 0.0, 2.0),
            0.05,
            Interim(second, 0.0, 3.5),
            0.05,
            Interim(third, 0.0, 5.0),
            0.05,
            SpeechChunk(third, 0.0, 5.0),
            EndOfTurn(5.0),
        ],
        settings,
    )
    assert [t.text for t in out if t.interim] == [
        "One two",
        "One two three",
        "One two three four.",
    ]
    sent = engine.interims
    np.testing.assert_array_equal(sent[0], first)
    np.testing.assert_array_equal(sent[1], tone((1.0, 0.1), (1.5, 0.2)))  # overlap + new
    np.testing.assert_array_equal(sent[2], tone((1.0, 0.2), (1.5, 0.3)))
    # The chunk and the final are the chunk's own decode of its whole audio, as without interims.
    np.testing.assert_array_equal(engine.calls[-1], third)
    assert [(t.text, t.is_final) for t in out if not t.interim] == [
        ("one two three four five", False),
        ("one two three four five", True),
    ]


async def test_after_a_chunk_interims_start_afresh_from_the_turn() -> None:
    settings = SessionSettings(overlap=1.0)
    engine = ScriptedInference(
        "alpha beta", "beta gamma", "beta gamma delta", "delta epsilon", "epsilon zeta"
    )
    out = await run_asr(
        engine,
        [
            SpeechChunk(tone((2.0, 0.4)), 0.0, 2.0),
            Interim(tone((1.0, 0.9)), 2.0, 3.0),
            0.05,
            SpeechChunk(tone((2.0, 0.5)), 2.0, 4.0),  # the speaker paused: a new buffer
            Interim(tone((1.0, 0.6)), 4.0, 5.0),
            0.05,
            Interim(tone((1.0, 0.6), (1.0, 0.7)), 4.0, 6.0),
            0.05,
            EndOfTurn(6.0),
        ],
        settings,
    )
    assert [t.text for t in out if t.interim] == [
        "alpha beta gamma",
        "alpha beta gamma delta epsilon",
        "alpha beta gamma delta epsilon zeta",
    ]
    first, second, third = engine.interims
    np.testing.assert_array_equal(first, tone((1.0, 0.4), (1.0, 0.9)))  # the chunk's tail
    np.testing.assert_array_equal(second, tone((1.0, 0.5), (1.0, 0.6)))  # the new chunk's
    np.testing.assert_array_equal(third, tone((1.0, 0.6), (1.0, 0.7)))
    assert out[-1].is_final
    assert out[-1].text == "alpha beta gamma delta"  # the chunks' words only


async def test_an_interim_overtaken_by_its_chunk_is_dropped() -> None:
    """The chunk that ends the interim's buffer is handled before the interim's task first
    runs: the interim still belongs to the old buffer and must not be stitched onto the turn's
    new words (it would repeat them)."""
    engine = ScriptedInference("one two three", "one two")
    audio = tone((2.0, 0.1))
    out = await run_asr(engine, [Interim(audio, 0.0, 2.0), SpeechChunk(audio, 0.0, 2.0), 0.05])
    assert [(t.text, t.interim) for t in out] == [("one two three", False)]


async def test_interims_are_skipped_when_the_engine_is_busy() -> None:
    engine = ScriptedInference("final words", busy=True)
    interim = Interim(np.full(16000, 0.1, np.float32), 0.0, 1.0)
    out = await run_asr(engine, [interim, interim, chunk(1, 0.1), EndOfTurn(1)])
    assert engine.interims == []
    assert [t.text for t in out] == ["final words", "final words"]


def test_join_undoes_the_sentence_start_capital_but_keeps_names() -> None:
    previous = ["And", "so,", "my", "fellow", "Americans,"]
    new = ["fellow", "Americans.", "Ask", "not", "what", "your", "country"]
    merged = merge_words(previous, new)
    assert " ".join(merged) == "And so, my fellow Americans. Ask not what your country"
    # No alignment at all: a capital after a comma is the engine's sentence start.
    merged = merge_words(["the", "process,"], ["She", "had", "gone"])
    assert " ".join(merged) == "the process, she had gone"
    # ...unless the earlier transcript had the same word capitalised mid-sentence: a name.
    merged = merge_words(["we", "asked", "Stella", "to"], ["Stella", "to", "bring", "it"])
    assert " ".join(merged) == "we asked Stella to bring it"
    assert merge_words(["Hello."], ["Then", "more"]) == ["Hello.", "Then", "more"]
    assert merge_words(["and"], ["I", "went"]) == ["and", "I", "went"]


def test_unaligned_overlap_is_replaced_not_appended() -> None:
    """The issue's noisy meeting utterance: the two transcripts of the overlap audio disagree,
    so the newer one replaces the words heard in the overlap."""
    previous = ["and", "I", "will", "get", "a", "clap", "for", "it"]
    new = ["And", "Abigail", "Clafer.", "You", "can", "call", "me", "Abby."]
    merged = merge_words(previous, new, overlap_words=len(previous))
    assert " ".join(merged) == "And Abigail Clafer. You can call me Abby."
    # Only the overlap's share of the words gives way.
    merged = merge_words(
        ["we", "met", "on", "Monday", "and", "I", "will", "get"], ["Abigail", "came", "too"], 3
    )
    assert [word_key(w) for w in merged] == [
        "we",
        "met",
        "on",
        "monday",
        "and",
        "abigail",
        "came",
        "too",
    ]
