"""What a wire dialect (our own protocol, Deepgram's, OpenAI's) supplies to a session.

A dialect turns client messages into commands and pipeline events into messages; the session
does everything else (the pipeline, limits, endings, errors) the same way for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from stt_server.audio import Audio
from stt_server.protocol import ErrorResponse
from stt_server.settings import SessionSettings
from stt_server.stages.asr import AsrOutput


@dataclass(frozen=True)
class Flush:
    """The client ended the turn: transcribe what is buffered and send the final now."""


@dataclass(frozen=True)
class EndOfInput:
    """No more audio: transcribe what was sent, then close."""


@dataclass(frozen=True)
class KeepAlive:
    """A message that only shows the client is there (it resets the idle timer)."""


@dataclass(frozen=True)
class Reconfigure:
    """The client changed its turn detection: segment the audio that follows with these."""

    settings: SessionSettings


@dataclass(frozen=True)
class Reply:
    """Messages to send the client now, in answer to its message (e.g. a settings update)."""

    messages: tuple[str, ...]


Command = Audio | Flush | EndOfInput | KeepAlive | Reconfigure | Reply


class Dialect(Protocol):
    endpoint: str  # a short name, for logs and metric labels

    def opening(self) -> list[str]:
        """Messages sent as soon as the session starts, before reading the client."""
        ...

    def decode(self, text: str | None, data: bytes | None) -> list[Command]:
        """The commands in one client message; `ProtocolError` for a bad one."""
        ...

    def render(self, event: AsrOutput) -> list[str]:
        """The messages (JSON texts) that tell the client about one pipeline event."""
        ...

    def error(self, response: ErrorResponse) -> str:
        """The message that reports an error in this dialect."""
        ...

    def closing(self) -> list[str]:
        """Messages sent after everything else when the input ended normally."""
        ...
