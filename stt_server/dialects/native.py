"""`/ws/transcribe`: our own protocol (protocol.py), as the seed design describes it."""

from __future__ import annotations

import base64
import binascii
import json

from pydantic import ValidationError

from stt_server.audio import Audio, AudioFormatError, StreamConverter
from stt_server.errors import ErrorCode, ProtocolError
from stt_server.protocol import AudioFrame, ErrorResponse, TranscriptionSegment
from stt_server.session.dialect import Command, EndOfInput, Flush
from stt_server.settings import SessionSettings
from stt_server.stages.asr import AsrOutput, Transcript

_FORMAT_ERRORS = {
    "sample_rate": ErrorCode.UNSUPPORTED_SAMPLE_RATE,
    "channels": ErrorCode.UNSUPPORTED_CHANNELS,
    "pcm": ErrorCode.INVALID_AUDIO,
}


def parse_json(text: str) -> object:
    """`json.loads` whose every failure is INVALID_JSON: JSONDecodeError, an integer over
    Python's digit limit (ValueError) and nesting deeper than the parser's stack."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"message is not valid JSON: {exc}") from exc


def decode_base64(samples: str) -> bytes:
    try:
        return base64.b64decode(samples, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(
            ErrorCode.INVALID_BASE64, f"samples is not valid base64: {exc}"
        ) from exc


def convert(converter: StreamConverter, data: bytes, sample_rate: int, channels: int) -> Audio:
    """PCM bytes → 16 kHz mono, with format problems as the client's error codes."""
    try:
        return converter.convert(data, sample_rate, channels)
    except AudioFormatError as exc:
        raise ProtocolError(_FORMAT_ERRORS[exc.field], str(exc)) from exc


def parse_text(text: str) -> AudioFrame | Flush | EndOfInput:
    """A text message: an `AudioFrame`, `{"type": "flush"}` or `{"type": "end"}`."""
    data = parse_json(text)
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "message must be a JSON object")
    kind = data.get("type", "audio")
    if kind == "end":
        return EndOfInput()
    if kind == "flush":
        return Flush()
    if kind != "audio":
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_MESSAGE_TYPE, f"unsupported message type {kind!r}"
        )
    try:
        return AudioFrame.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"invalid AudioFrame: {fields}") from exc


class NativeDialect:
    endpoint = "transcribe"

    def __init__(self, settings: SessionSettings) -> None:
        self._settings = settings
        self._converter = StreamConverter()

    def opening(self) -> list[str]:
        return []

    def decode(self, text: str | None, data: bytes | None) -> list[Command]:
        if text is not None:
            message = parse_text(text)
            if not isinstance(message, AudioFrame):
                return [*self._tail(), message]
            pcm = decode_base64(message.samples)
            return [convert(self._converter, pcm, message.sample_rate, message.channels)]
        if data is not None:
            s = self._settings
            return [convert(self._converter, data, s.sample_rate, s.channels)]
        return []

    def _tail(self) -> list[Command]:
        """Before a flush or the end: the resampler's last milliseconds belong to this turn."""
        tail = self._converter.flush()
        return [tail] if tail.size else []

    def render(self, event: AsrOutput) -> list[str]:
        if not isinstance(event, Transcript):
            return []
        segment = TranscriptionSegment(
            text=event.text, is_final=event.is_final, is_end_of_turn=event.is_end_of_turn
        )
        return [segment.to_json()]

    def error(self, response: ErrorResponse) -> str:
        return response.to_json()

    def closing(self) -> list[str]:
        return []
