"""The one table of error codes: what each means and how the connection ends, if it does.

README's "Errors" section is this table (a test keeps the two in step). The exceptions that carry
a code to the client (`ProtocolError`) and the ones engines raise (`EngineError`,
`EngineLoadError`) live here too, at the bottom, so any layer can raise them without importing
the layers above.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from stt_server.audio import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

# WebSocket close codes the server uses (RFC 6455, section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


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
    UNAUTHORIZED = "UNAUTHORIZED"
    ORIGIN_NOT_ALLOWED = "ORIGIN_NOT_ALLOWED"
    TOO_MANY_SESSIONS = "TOO_MANY_SESSIONS"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    IDLE_TIMEOUT = "IDLE_TIMEOUT"
    SESSION_TOO_LONG = "SESSION_TOO_LONG"
    CLIENT_NOT_READING = "CLIENT_NOT_READING"
    ENGINE_ERROR = "ENGINE_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"


@dataclass(frozen=True)
class ErrorInfo:
    meaning: str
    close_code: int | None  # None: the session continues


ERROR_TABLE: dict[ErrorCode, ErrorInfo] = {
    ErrorCode.INVALID_MESSAGE: ErrorInfo(
        "JSON object lacks a field or has a wrong field type", None
    ),
    ErrorCode.INVALID_JSON: ErrorInfo("text message is not valid JSON", None),
    ErrorCode.INVALID_BASE64: ErrorInfo("`samples` is not valid base64", None),
    ErrorCode.INVALID_AUDIO: ErrorInfo(
        "PCM byte count is not a whole number of 16-bit frames", None
    ),
    ErrorCode.UNSUPPORTED_SAMPLE_RATE: ErrorInfo(
        f"sample rate outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz", None
    ),
    ErrorCode.UNSUPPORTED_CHANNELS: ErrorInfo(f"channel count outside 1..{MAX_CHANNELS}", None),
    ErrorCode.MESSAGE_TOO_LARGE: ErrorInfo("message larger than the server's limit", None),
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: ErrorInfo(
        '`type` other than "audio", "flush" or "end"', None
    ),
    ErrorCode.INVALID_CONFIG: ErrorInfo("bad query parameter", CLOSE_POLICY_VIOLATION),
    ErrorCode.UNAUTHORIZED: ErrorInfo("missing or wrong API key", CLOSE_POLICY_VIOLATION),
    ErrorCode.ORIGIN_NOT_ALLOWED: ErrorInfo(
        "browser Origin not in the allowed list", CLOSE_POLICY_VIOLATION
    ),
    ErrorCode.TOO_MANY_SESSIONS: ErrorInfo(
        "the server's session limit is reached", CLOSE_TRY_AGAIN_LATER
    ),
    ErrorCode.SHUTTING_DOWN: ErrorInfo(
        "the server is draining for shutdown; no new sessions", CLOSE_GOING_AWAY
    ),
    # Idle: the input was finished (finals sent) and nothing is lost, so a normal closure.
    ErrorCode.IDLE_TIMEOUT: ErrorInfo("no message from the client for too long", CLOSE_NORMAL),
    ErrorCode.SESSION_TOO_LONG: ErrorInfo(
        "the session reached its maximum length", CLOSE_POLICY_VIOLATION
    ),
    # Never delivered as a message (the client is not reading): the close reason says it.
    ErrorCode.CLIENT_NOT_READING: ErrorInfo(
        "a send to the client did not complete in time", CLOSE_POLICY_VIOLATION
    ),
    ErrorCode.ENGINE_ERROR: ErrorInfo(
        "the ASR engine failed on this session's audio", CLOSE_INTERNAL_ERROR
    ),
    ErrorCode.INTERNAL_ERROR: ErrorInfo(
        "unexpected server error in this session", CLOSE_INTERNAL_ERROR
    ),
}


def close_code(code: ErrorCode) -> int:
    """The WebSocket close code that follows an error which ends the session."""
    return ERROR_TABLE[code].close_code or CLOSE_INTERNAL_ERROR


class ProtocolError(Exception):
    """An error that is reported to the client with its code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EngineError(Exception):
    """Transcription of one request failed; fails only the session that sent it."""


class EngineLoadError(Exception):
    """The model could not be loaded at start-up; the message says how to fix it."""
