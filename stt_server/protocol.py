"""Wire protocol: the JSON messages exchanged over `/ws/transcribe` and the error-code table.

Field names are camelCase on the wire (`sampleRate`, `isFinal`) and snake_case in Python.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from stt_server.engines.base import EngineError


class ErrorCode(StrEnum):
    INVALID_MESSAGE = "INVALID_MESSAGE"
    INVALID_JSON = "INVALID_JSON"
    INVALID_BASE64 = "INVALID_BASE64"
    INVALID_AUDIO = "INVALID_AUDIO"
    UNSUPPORTED_SAMPLE_RATE = "UNSUPPORTED_SAMPLE_RATE"
    UNSUPPORTED_CHANNELS = "UNSUPPORTED_CHANNELS"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    UNSUPPORTED_MESSAGE_TYPE = "UNSUPPORTED_MESSAGE_TYPE"
    INVALID_CONFIG = "INVALID_CONFIG"
    ENGINE_ERROR = "ENGINE_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"


# The one table of error codes: what each means and whether the session survives it.
# (README's "Errors" section is this table.)
ERROR_TABLE: dict[ErrorCode, tuple[str, bool]] = {
    ErrorCode.INVALID_MESSAGE: ("JSON object lacks a field or has a wrong field type", True),
    ErrorCode.INVALID_JSON: ("text message is not valid JSON", True),
    ErrorCode.INVALID_BASE64: ("`samples` is not valid base64", True),
    ErrorCode.INVALID_AUDIO: ("PCM byte count is not a whole number of 16-bit frames", True),
    ErrorCode.UNSUPPORTED_SAMPLE_RATE: ("sample rate outside 8000..48000 Hz", True),
    ErrorCode.UNSUPPORTED_CHANNELS: ("channel count outside 1..8", True),
    ErrorCode.MESSAGE_TOO_LARGE: ("message larger than the server's limit", True),
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: ('`type` field other than "audio"', True),
    ErrorCode.INVALID_CONFIG: ("bad query parameter; connection closed with 1008", False),
    ErrorCode.ENGINE_ERROR: ("the ASR engine failed on this session's audio; closed 1011", False),
    ErrorCode.INTERNAL_ERROR: ("unexpected server error in this session; closed 1011", False),
}


class _Message(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


class AudioFrame(_Message):
    """Client → server: base64 16-bit little-endian PCM, interleaved when multi-channel."""

    samples: str
    sample_rate: int = 16000
    channels: int = 1


class TranscriptionSegment(_Message):
    """Server → client: tentative (`isFinal=false`) or final text of the current turn."""

    text: str
    is_final: bool = False
    is_end_of_turn: bool = False


class ErrorResponse(_Message):
    """Server → client: something the client can act on."""

    error: str
    code: ErrorCode


class ProtocolError(Exception):
    """An error that is reported to the client as an `ErrorResponse`."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def response(self) -> ErrorResponse:
        return ErrorResponse(error=self.message, code=self.code)


def error_response(exc: BaseException) -> ErrorResponse:
    """The one place that turns an exception into what the client is told."""
    if isinstance(exc, ProtocolError):
        return exc.response()
    if isinstance(exc, EngineError):
        return ErrorResponse(error=f"transcription failed: {exc}", code=ErrorCode.ENGINE_ERROR)
    return ErrorResponse(
        error=f"internal server error ({type(exc).__name__})", code=ErrorCode.INTERNAL_ERROR
    )
