from __future__ import annotations

from pathlib import Path

from stt_server.errors import ERROR_TABLE, EngineError, ErrorCode, ProtocolError, close_code
from stt_server.protocol import (
    AudioFrame,
    EndOfStream,
    ErrorResponse,
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


def test_readme_states_each_codes_close_code() -> None:
    """The one table decides how a session ends; README's row for each code must agree."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {line.split("`")[1]: line for line in readme.splitlines() if line.startswith("| `")}
    for code, info in ERROR_TABLE.items():
        ending = rows[code.value].rsplit("|", 2)[1]
        if info.close_code is None:
            assert "continues" in ending, code
        else:
            assert str(info.close_code) in ending, code


def test_end_of_stream_message() -> None:
    assert EndOfStream().to_json() == '{"type":"end"}'
    assert close_code(ErrorCode.TOO_MANY_SESSIONS) == 1013
    assert close_code(ErrorCode.IDLE_TIMEOUT) == 1000
