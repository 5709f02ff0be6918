from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from av.audio.stream import AudioStream

from stt_server.audio import SAMPLE_RATE
from stt_server.files.decode import AudioTooLong, UndecodableAudio, decode_file

TONE = 440.0


def tone(seconds: float, rate: int, channels: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.5 * np.sin(2 * np.pi * TONE * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1)


def encode_with_av(path: Path, codec: str, seconds: float, rate: int) -> bytes:
    frames = tone(seconds, rate, 2)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="stereo")
        assert isinstance(stream, AudioStream)
        pcm = (frames * 32767).astype(np.int16).reshape(1, -1)  # packed s16: (1, samples * 2)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path.read_bytes()


def encode_with_soundfile(fmt: str, subtype: str, seconds: float, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, tone(seconds, rate, 2), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def dominant_frequency(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)[np.argmax(spectrum)])


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("wav", lambda _: encode_with_soundfile("WAV", "PCM_16", 2.0, 44100)),
        ("flac", lambda _: encode_with_soundfile("FLAC", "PCM_24", 2.0, 96000)),
        ("ogg-vorbis", lambda _: encode_with_soundfile("OGG", "VORBIS", 2.0, 22050)),
        ("ogg-opus", lambda _: encode_with_soundfile("OGG", "OPUS", 2.0, 48000)),
        ("mp3", lambda p: encode_with_av(p / "a.mp3", "mp3", 2.0, 44100)),
        ("m4a-aac", lambda p: encode_with_av(p / "a.m4a", "aac", 2.0, 44100)),
        ("webm-opus", lambda p: encode_with_av(p / "a.webm", "libopus", 2.0, 48000)),
    ],
)
def test_every_common_format_decodes_to_16k_mono(
    name: str, make: Callable[[Path], bytes], tmp_path: Path
) -> None:
    audio = decode_file(make(tmp_path))
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    # Codecs add priming and padding of a few tens of milliseconds.
    assert len(audio) / SAMPLE_RATE == pytest.approx(2.0, abs=0.1), name
    assert dominant_frequency(audio) == pytest.approx(TONE, abs=2.0), name


def test_too_long_audio_stops_decoding(tmp_path: Path) -> None:
    wav = encode_with_soundfile("WAV", "PCM_16", 3.0, 16000)
    with pytest.raises(AudioTooLong):
        decode_file(wav, max_seconds=2.0)
    assert len(decode_file(wav, max_seconds=3.5)) == 3 * SAMPLE_RATE
    mp3 = encode_with_av(tmp_path / "a.mp3", "mp3", 3.0, 44100)
    with pytest.raises(AudioTooLong):
        decode_file(mp3, max_seconds=2.0)


@pytest.mark.parametrize("data", [b"", b"not audio at all" * 64, b"RIFF\x00\x00\x00\x00WAVE"])
def test_what_is_not_audio_is_undecodable(data: bytes) -> None:
    with pytest.raises(UndecodableAudio):
        decode_file(data)
