"""Decoding files of every supported format to 16 kHz mono, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from stt_server.audio import SAMPLE_RATE
from stt_server.client.audio_file import AudioFileError, load_audio
from tests.stt_server.speech import speak, write_audio_file


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speak("Testing one two three, this is the client.")


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Peak normalised cross-correlation: codecs add delay and small errors."""
    n = min(len(a), len(b))
    corr = np.correlate(a[:n], b[:n], mode="full")
    return float(np.max(np.abs(corr)) / (np.linalg.norm(a[:n]) * np.linalg.norm(b[:n]) + 1e-9))


@pytest.mark.parametrize(
    ("name", "rate", "channels"),
    [
        ("speech.wav", 16000, 1),
        ("speech.flac", 44100, 2),
        ("speech.ogg", 48000, 1),
        ("speech.mp3", 22050, 1),
        ("speech-8k.wav", 8000, 2),
    ],
)
def test_formats_decode_to_16k_mono(
    tmp_path: Path, speech: np.ndarray, name: str, rate: int, channels: int
) -> None:
    path = tmp_path / name
    write_audio_file(path, speech, rate, channels)

    decoded = load_audio(path)

    assert decoded.dtype == np.float32
    assert decoded.ndim == 1
    # Same duration at 16 kHz (MP3 adds up to a few frames of encoder padding).
    assert abs(len(decoded) - len(speech)) < 0.1 * SAMPLE_RATE
    floor = 0.5 if rate == 8000 else 0.8  # 8 kHz loses everything above 4 kHz
    assert similarity(speech, decoded) > floor


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="no such file"):
        load_audio(tmp_path / "absent.wav")


def test_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio at all\n" * 20)
    with pytest.raises(AudioFileError, match="not a readable audio file"):
        load_audio(path)


def test_empty_audio(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioFileError, match="no audio"):
        load_audio(path)
