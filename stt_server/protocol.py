"""Wire protocol of `/ws/transcribe`: the JSON messages both ways.

Field names are camelCase on the wire (`sampleRate`, `isFinal`) and snake_case in Python.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from stt_server.audio import SAMPLE_RATE
from stt_server.errors import EngineError, ErrorCode, ProtocolError


class _Message(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


class AudioFrame(_Message):
    """Client → server: base64 16-bit little-endian PCM, interleaved when multi-channel."""

    samples: str
    sample_rate: int = SAMPLE_RATE
    channels: int = 1


class Flush(_Message):
    """Client → server, `{"type": "flush"}`: the speaker's turn is over (the agent's own turn
    detector says so); transcribe what is buffered now and send the final, then go on."""

    type: Literal["flush"] = "flush"


class EndOfStream(_Message):
    """Client → server, `{"type": "end"}`: no more audio; transcribe what was sent, then close."""

    type: Literal["end"] = "end"


class TranscriptionSegment(_Message):
    """Server → client: tentative (`isFinal=false`) or final text of the current turn."""

    text: str
    is_final: bool = False
    is_end_of_turn: bool = False


class ErrorResponse(_Message):
    """Server → client: something the client can act on."""

    error: str
    code: ErrorCode


def error_response(exc: BaseException) -> ErrorResponse:
    """The one place that turns an exception into what the client is told."""
    if isinstance(exc, ProtocolError):
        return ErrorResponse(error=exc.message, code=exc.code)
    if isinstance(exc, EngineError):
        return ErrorResponse(error=f"transcription failed: {exc}", code=ErrorCode.ENGINE_ERROR)
    return ErrorResponse(
        error=f"internal server error ({type(exc).__name__})", code=ErrorCode.INTERNAL_ERROR
    )
