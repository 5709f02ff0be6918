"""`/ws/transcribe`: our own protocol (protocol.py), as the seed design describes it."""

from __future__ import annotations

from pydantic import ValidationError

from stt_server.audio import StreamConverter
from stt_server.dialects.wire import convert, decode_base64, parse_json
from stt_server.errors import ErrorCode, ProtocolError
from stt_server.protocol import AudioFrame, ErrorResponse, TranscriptionSegment
from stt_server.session.dialect import Command, EndOfInput, Flush
from stt_server.settings import SessionSettings
from stt_server.stages.asr import AsrOutput, Transcript


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
