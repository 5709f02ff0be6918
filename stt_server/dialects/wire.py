"""What every dialect does with a client's bytes: JSON and base64 parsed, and PCM converted to
16 kHz mono, each failure raised as the error code a client can act on."""

from __future__ import annotations

import base64
import binascii
import json

from stt_server.audio import Audio, AudioFormatError, StreamConverter
from stt_server.errors import ErrorCode, ProtocolError

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


def decode_base64(samples: str, field: str = "samples") -> bytes:
    try:
        return base64.b64decode(samples, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(
            ErrorCode.INVALID_BASE64, f"{field} is not valid base64: {exc}"
        ) from exc


def convert(converter: StreamConverter, data: bytes, sample_rate: int, channels: int) -> Audio:
    """PCM bytes → 16 kHz mono, with format problems as the client's error codes."""
    try:
        return converter.convert(data, sample_rate, channels)
    except AudioFormatError as exc:
        raise ProtocolError(_FORMAT_ERRORS[exc.field], str(exc)) from exc
