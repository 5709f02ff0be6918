from __future__ import annotations

from pathlib import Path

from stt_server.engines.base import EngineError
from stt_server.protocol import (
    ERROR_TABLE,
    AudioFrame,
    ErrorCode,
    ErrorResponse,
    ProtocolError,
    TranscriptionSegment,
    error_response,
)


def test_messages_are_camel_case_on_the_wire() -> None:
    frame = AudioFrame.model_validate({"samples": "AAA=", "sampleRate": 8000, "channels": 2})
    assert (frame.sample_rate, frame.channels) == (8000, 2)
    assert frame.to_json() == '{"samples":"AAA=","sampleRate":8000,"channels":2}'
    segment = TranscriptionSegment(text="hi", is_final=True)
    assert segment.to_json() == '{"text":"hi","isFinal":true,"isEndOfTurn":false}'
    error = ErrorResponse(error="nope", code=ErrorCode.INVALID_JSON)
    assert error.to_json() == '{"error":"nope","code":"INVALID_JSON"}'


def test_audio_frame_defaults_to_16k_mono() -> None:
    frame = AudioFrame.model_validate({"samples": ""})
    assert (frame.sample_rate, frame.channels) == (16000, 1)


def test_every_code_is_in_the_one_table() -> None:
    assert set(ERROR_TABLE) == set(ErrorCode)


def test_exceptions_become_error_responses() -> None:
    assert error_response(ProtocolError(ErrorCode.INVALID_AUDIO, "odd")) == ErrorResponse(
        error="odd", code=ErrorCode.INVALID_AUDIO
    )
    assert error_response(EngineError("oom")).code is ErrorCode.ENGINE_ERROR
    internal = error_response(KeyError("secret detail"))
    assert internal.code is ErrorCode.INTERNAL_ERROR
    assert "secret detail" not in internal.error


def test_readme_documents_every_error_code() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Server") :]
    for code in ErrorCode:
        assert f"| `{code.value}` |" in section, code
