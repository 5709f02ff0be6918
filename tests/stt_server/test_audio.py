from __future__ import annotations

import base64

import numpy as np
import pytest

from stt_server.audio import (
    AudioFormatError,
    StreamConverter,
    check_format,
    decode_pcm16,
    downmix,
    encode_pcm16,
    resample,
)
from stt_server.dialects.wire import decode_base64
from stt_server.errors import ErrorCode, ProtocolError


def tone(freq: float, rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def test_decode_pcm16_golden_values() -> None:
    data = np.array([0, 16384, -32768, 32767], dtype="<i2").tobytes()
    out = decode_pcm16(data, 1)
    assert out.shape == (4, 1)
    assert out[:, 0].tolist() == [0.0, 0.5, -1.0, 32767 / 32768]


def test_decode_pcm16_interleaved_stereo() -> None:
    data = np.array([100, -100, 200, -200], dtype="<i2").tobytes()
    out = decode_pcm16(data, 2)
    assert out.shape == (2, 2)
    assert downmix(out).tolist() == [0.0, 0.0]


def test_downmix_of_mono_is_the_channel_itself() -> None:
    data = np.array([0, 16384, -32768, 32767], dtype="<i2").tobytes()
    mono = downmix(decode_pcm16(data, 1))
    assert mono.shape == (4,)
    assert mono.dtype == np.float32
    assert mono.tolist() == [0.0, 0.5, -1.0, 32767 / 32768]


@pytest.mark.parametrize(("size", "channels"), [(3, 1), (6, 2), (2, 2)])
def test_partial_frames_are_invalid_audio(size: int, channels: int) -> None:
    with pytest.raises(AudioFormatError) as info:
        decode_pcm16(b"\x00" * size, channels)
    assert info.value.field == "pcm"


def test_encode_round_trip() -> None:
    x = np.array([0.0, 0.25, -0.5, 1.0, -1.0, 2.0], dtype=np.float32)
    back = decode_pcm16(encode_pcm16(x), 1)[:, 0]
    assert back.tolist() == [0.0, 0.25, -0.5, 32767 / 32768, -1.0, 32767 / 32768]


def test_invalid_base64() -> None:
    assert decode_base64(base64.b64encode(b"ab").decode()) == b"ab"
    with pytest.raises(ProtocolError) as info:
        decode_base64("not base64!")
    assert info.value.code is ErrorCode.INVALID_BASE64


@pytest.mark.parametrize(
    ("rate", "channels", "field"),
    [
        (7999, 1, "sample_rate"),
        (48001, 1, "sample_rate"),
        (16000, 0, "channels"),
        (16000, 9, "channels"),
    ],
)
def test_format_limits(rate: int, channels: int, field: str) -> None:
    with pytest.raises(AudioFormatError) as info:
        check_format(rate, channels)
    assert info.value.field == field


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resample_keeps_pitch_and_duration(rate: int) -> None:
    out = resample(tone(440, rate, 1.0), rate, 16000)
    assert len(out) == 16000
    assert dominant_frequency(out, 16000) == pytest.approx(440, abs=2)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_stream_converter_matches_whole_signal_resampling(rate: int) -> None:
    x = tone(300, rate, 1.0)
    stereo = np.stack([x, x], axis=1)
    converter = StreamConverter()
    step = rate // 50  # 20 ms messages
    parts = [
        converter.convert(encode_pcm16(stereo[i : i + step]), rate, 2)
        for i in range(0, len(x), step)
    ]
    parts.append(converter.flush())
    streamed = np.concatenate(parts)
    whole = resample(decode_pcm16(encode_pcm16(x), 1)[:, 0], rate, 16000)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 1e-3


def test_stream_converter_follows_rate_changes() -> None:
    converter = StreamConverter()
    a = converter.convert(encode_pcm16(tone(440, 48000, 0.5)), 48000, 1)
    b = converter.convert(encode_pcm16(tone(440, 16000, 0.5)), 16000, 1)
    total = len(a) + len(b)
    assert total == pytest.approx(16000, abs=16)  # the 48 kHz tail is flushed, not lost
    assert dominant_frequency(np.concatenate([a, b]), 16000) == pytest.approx(440, abs=3)


def test_flush_returns_the_resamplers_last_milliseconds_and_starts_afresh() -> None:
    converter = StreamConverter()
    x = tone(300, 48000, 0.5)
    head = converter.convert(encode_pcm16(x), 48000, 1)
    tail = converter.flush()
    assert tail.size > 0  # what soxr held back for its filter
    assert len(head) + len(tail) == pytest.approx(8000, abs=2)
    again = converter.convert(encode_pcm16(x), 48000, 1)
    assert len(again) + len(converter.flush()) == pytest.approx(8000, abs=2)
