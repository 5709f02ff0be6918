"""Settings: server-wide (CLI flags / env vars) and per session (defaults + query overrides)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from stt_server.protocol import ErrorCode, ProtocolError

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000
MAX_CHANNELS = 8


class SessionSettings(BaseModel):
    """VAD/ASR tuning and binary-frame format of one connection.

    Server defaults come from CLI flags/env vars; a client may override any field with a query
    parameter of the camelCase name, e.g. `/ws/transcribe?largeGap=1.0&sampleRate=48000`.
    Durations are in seconds.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )

    speech_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    silence_threshold: float = Field(default=0.35, gt=0.0, lt=1.0)
    small_gap: float = Field(default=0.3, gt=0.0, le=10.0)
    min_chunk: float = Field(default=1.0, ge=0.0, le=30.0)
    large_gap: float = Field(default=1.5, gt=0.0, le=30.0)
    max_buffer: float = Field(default=20.0, ge=2.0, le=60.0)
    max_leading_silence: float = Field(default=3.0, ge=0.0, le=30.0)
    overlap: float = Field(default=5.0, ge=0.0, le=30.0)
    # Format of binary (raw PCM) messages; JSON frames carry their own.
    sample_rate: int = Field(default=16000, ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE)
    channels: int = Field(default=1, ge=1, le=MAX_CHANNELS)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.silence_threshold > self.speech_threshold:
            raise ValueError("silenceThreshold must not exceed speechThreshold")
        if self.small_gap >= self.large_gap:
            raise ValueError("smallGap must be shorter than largeGap")
        return self

    def with_overrides(self, query: Mapping[str, str]) -> SessionSettings:
        """These settings with query-string overrides applied; `ProtocolError` if invalid."""
        merged = {**self.model_dump(by_alias=True), **dict(query)}
        try:
            return SessionSettings.model_validate(merged)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ProtocolError(ErrorCode.INVALID_CONFIG, f"invalid settings: {problems}") from exc


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server process needs; built by the CLI from flags and `STT_*` env vars."""

    host: str = "0.0.0.0"
    port: int = 15751
    engine: str = "canary-qwen"
    model: str | None = None
    device: str = "cuda"
    max_batch_size: int = 8
    batch_wait_ms: float = 5.0
    max_message_bytes: int = 1 << 20
    queue_size: int = 64
    log_level: str = "info"
    # Limits; a duration of 0 disables that limit.
    max_sessions: int = 100
    idle_timeout: float = 30.0  # seconds without a client message
    max_session_seconds: float = 3600.0
    send_timeout: float = 10.0  # a send to a client that does not read fails after this
    drain_timeout: float = 30.0  # SIGTERM: how long open sessions get to finish their input
    # Access: a shared key (None: open) and the Origins browsers may connect from (empty: any).
    api_key: str | None = None
    allowed_origins: tuple[str, ...] = ()
    session: SessionSettings = field(default_factory=SessionSettings)


SESSION_FLAGS: dict[str, str] = {
    name: name.replace("_", "-")
    for name in SessionSettings.model_fields
    if name not in ("sample_rate", "channels")
}


def env_name(field_name: str) -> str:
    return "STT_" + field_name.upper()
