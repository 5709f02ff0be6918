"""Golden cases of our own protocol's decoder: each client message and what it becomes."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from stt_server.audio import encode_pcm16
from stt_server.dialects.native import NativeDialect, parse_text
from stt_server.errors import ErrorCode, ProtocolError
from stt_server.protocol import AudioFrame
from stt_server.session.dialect import EndOfInput, Flush
from stt_server.settings import SessionSettings

PCM = encode_pcm16(np.array([0.0, 0.5, -0.5, 0.25], np.float32))
B64 = base64.b64encode(PCM).decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type": "end"}', EndOfInput()),
        ('{"type": "flush"}', Flush()),
        (f'{{"samples": "{B64}"}}', AudioFrame(samples=B64)),
        (
            f'{{"type": "audio", "samples": "{B64}", "sampleRate": 8000, "channels": 2}}',
            AudioFrame(samples=B64, sample_rate=8000, channels=2),
        ),
    ],
)
def test_good_messages(text: str, expected: object) -> None:
    assert parse_text(text) == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", ErrorCode.INVALID_JSON),
        ("[1, 2]", ErrorCode.INVALID_MESSAGE),
        ('"samples"', ErrorCode.INVALID_MESSAGE),
        ("{}", ErrorCode.INVALID_MESSAGE),
        ('{"samples": 5}', ErrorCode.INVALID_MESSAGE),
        ('{"samples": "AAAA", "sampleRate": "fast"}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "Finalize"}', ErrorCode.UNSUPPORTED_MESSAGE_TYPE),
        ('{"type": "audio"}', ErrorCode.INVALID_MESSAGE),
        ("[" * 100_000, ErrorCode.INVALID_JSON),
    ],
)
def test_bad_messages(text: str, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_text(text)
    assert info.value.code is code


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"samples": "not base64!"}', ErrorCode.INVALID_BASE64),
        ('{"samples": "AAAA", "sampleRate": 7000}', ErrorCode.UNSUPPORTED_SAMPLE_RATE),
        ('{"samples": "AAAA", "channels": 9}', ErrorCode.UNSUPPORTED_CHANNELS),
        ('{"samples": "AAAAAA==", "channels": 3}', ErrorCode.INVALID_AUDIO),
    ],
)
def test_audio_problems_get_their_codes(text: str, code: ErrorCode) -> None:
    dialect = NativeDialect(SessionSettings())
    with pytest.raises(ProtocolError) as info:
        dialect.decode(text, None)
    assert info.value.code is code


def test_binary_frames_use_the_query_format_and_flush_carries_the_resampler_tail() -> None:
    dialect = NativeDialect(SessionSettings(sample_rate=48000, channels=1))
    pcm = encode_pcm16(np.sin(np.arange(4800) / 10).astype(np.float32) * 0.3)
    (audio,) = dialect.decode(None, pcm)
    assert isinstance(audio, np.ndarray)
    assert audio.dtype == np.float32
    commands = dialect.decode('{"type": "flush"}', None)
    assert isinstance(commands[-1], Flush)
    tail = commands[0]
    assert isinstance(tail, np.ndarray)
    assert tail.size > 0
    assert len(audio) + tail.size == pytest.approx(1600, abs=2)
