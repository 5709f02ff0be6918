"""The engine interface: batch-first ASR, and optionally step-level (continuous) decoding."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from stt_server.audio import Audio
from stt_server.errors import EngineError, EngineLoadError

__all__ = ["Audio", "Engine", "EngineError", "EngineLoadError", "SteppedEngine"]


class Engine(Protocol):
    """Batch-first ASR: one text per input array (float32, mono, 16 kHz)."""

    name: str
    model: str
    device: str

    def transcribe(self, batch: list[Audio]) -> list[str]: ...


@runtime_checkable
class SteppedEngine(Protocol):
    """An engine that decodes one token per active request per step: a request admitted between
    steps joins the next one, and a finished one leaves at once (continuous batching)."""

    name: str
    model: str
    device: str

    def transcribe(self, batch: list[Audio]) -> list[str]: ...

    def admit(self, requests: list[tuple[int, Audio]]) -> None: ...

    def step(self) -> list[tuple[int, str]]: ...

    def abort(self, request_id: int) -> None: ...

    @property
    def active(self) -> int: ...


# Every engine here transcribes English only; clients name it `en`, `en-US`, `en_GB`, `english`.
ENGLISH = frozenset({"en", "english"})


def is_english(language: str) -> bool:
    return language.lower().replace("_", "-").split("-")[0] in ENGLISH
