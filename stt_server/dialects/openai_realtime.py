"""`/v1/realtime`: OpenAI's Realtime API, transcription sessions (GA and beta event names).

The client appends base64 pcm16 (24 kHz unless its `session.update` says another rate); with
`server_vad` turn detection (the default) our VAD ends turns after `silence_duration_ms` of
silence, and with `turn_detection: null` only `input_audio_buffer.commit` does. Each turn is one
conversation item: `speech_started` (server_vad only), deltas while it is spoken, then
`speech_stopped`, `committed`, the last delta and `completed`.

Deltas are append-only while our transcript of a turn may still change (a later chunk can revise
earlier words). So a delta goes out only when the text so far extends what was sent; interim
decodes (mid-word cuts) send all but their last word; `completed` always has the turn's final
text.

A turn-detection change in `session.update` becomes a `Reconfigure` of the session's VAD for
the audio after it; a format change switches this dialect's resampler. `error` events go out
only for real errors (LiveKit treats every one as fatal).
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from stt_server.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, Audio, StreamConverter
from stt_server.dialects.wire import convert, decode_base64, parse_json
from stt_server.engines.base import is_english
from stt_server.errors import ErrorCode, ProtocolError
from stt_server.protocol import ErrorResponse
from stt_server.session.dialect import Command, Flush, Reconfigure, Reply
from stt_server.settings import SessionSettings, describe
from stt_server.stages.asr import AsrOutput, Transcript
from stt_server.stages.vad import SpeechStart

DEFAULT_RATE = 24000  # OpenAI's pcm16 is 24 kHz mono
DEFAULT_MODEL = "gpt-4o-transcribe"


def error_event(response: ErrorResponse) -> str:
    """An error in the Realtime API's shape (also for a refused connection)."""
    kind = "server_error" if response.code in _SERVER_ERRORS else "invalid_request_error"
    error = {
        "type": kind,
        "code": response.code.value.lower(),
        "message": response.error,
        "param": None,
        "event_id": None,
    }
    return json.dumps({"type": "error", "event_id": None, "error": error})


_SERVER_ERRORS = frozenset(
    {ErrorCode.ENGINE_ERROR, ErrorCode.INTERNAL_ERROR, ErrorCode.SHUTTING_DOWN}
)


def open_realtime(
    query: Mapping[str, str], defaults: SessionSettings
) -> tuple[SessionSettings, OpenAIRealtimeDialect]:
    """`?intent=transcription` (or no intent: the first `session.update` says the type);
    `model` and other query parameters are accepted and ignored."""
    intent = query.get("intent")
    if intent not in (None, "transcription"):
        raise ProtocolError(
            ErrorCode.INVALID_CONFIG,
            f"intent {intent!r} is not served: this server serves transcription sessions only",
        )
    dialect = OpenAIRealtimeDialect(defaults, model=query.get("model"))
    return dialect.settings, dialect


def _config_error(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_CONFIG, message)


def _object(value: object, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _config_error(f"{name} must be an object")
    return value


class OpenAIRealtimeDialect:
    endpoint = "openai_realtime"

    def __init__(self, defaults: SessionSettings, *, model: str | None = None) -> None:
        self._defaults = defaults
        self.settings = defaults
        self._server_vad = True
        self._rate = DEFAULT_RATE
        self._model = model or DEFAULT_MODEL
        self._prompt = ""
        self._beta = False  # the client uses the beta event names
        self._converter = StreamConverter(DEFAULT_RATE)
        self._event_ids = itertools.count(1)
        self._item_ids = itertools.count(1)
        self._item: str | None = None  # the open conversation item (turn)
        self._started = False  # speech_started was sent for it
        self._sent = ""  # its text sent as deltas so far
        self._previous: str | None = None  # the last committed item
        self._flushes: deque[str] = deque()  # "commit" / "clear", answered in order

    # --- client → server ---

    def opening(self) -> list[str]:
        return [self._event("session.created", session=self._session())]

    def decode(self, text: str | None, data: bytes | None) -> list[Command]:
        if text is None:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
                "binary messages are not part of the Realtime API: send input_audio_buffer.append",
            )
        message = parse_json(text)
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "an event must be an object with a type")
        kind: str = message["type"]
        if kind == "input_audio_buffer.append":
            return [self._append(message.get("audio"))]
        if kind == "input_audio_buffer.commit":
            self._flushes.append("commit")
            return [*self._tail(), Flush()]
        if kind == "input_audio_buffer.clear":
            self._flushes.append("clear")
            return [*self._tail(), Flush(), Reply((self._event("input_audio_buffer.cleared"),))]
        if kind in ("session.update", "transcription_session.update"):
            self._beta = kind == "transcription_session.update"
            self._update(_object(message.get("session"), "session"))
            reply = "transcription_session.updated" if self._beta else "session.updated"
            updated = self._event(reply, session=self._session())
            return [Reconfigure(self.settings), Reply((updated,))]
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            f"event type {kind!r} is not served: this server serves transcription sessions",
        )

    def _append(self, audio: object) -> Audio:
        if not isinstance(audio, str):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "input_audio_buffer.append needs audio")
        pcm = decode_base64(audio, "audio")
        return convert(self._converter, pcm, self._rate, 1)

    def _tail(self) -> list[Command]:
        """The resampler's last milliseconds belong to the turn that ends now."""
        tail = self._converter.flush()
        return [tail] if tail.size else []

    def _update(self, session: dict[str, Any]) -> None:
        """Apply a GA (`audio.input...`) or beta (`input_audio_...`) session; `ProtocolError`
        leaves everything as it was."""
        kind = session.get("type")
        if kind not in (None, "transcription"):
            raise _config_error(
                f"session type {kind!r} is not served: this server serves transcription sessions"
            )
        if self._beta:
            audio_format = session.get("input_audio_format")
            if audio_format not in (None, "pcm16"):
                raise _config_error(f"input_audio_format {audio_format!r}: only pcm16 is served")
            rate = self._rate
            transcription = _object(session.get("input_audio_transcription"), "transcription")
            turn = session
        else:
            turn = _object(_object(session.get("audio"), "audio").get("input"), "audio.input")
            rate = self._format_rate(_object(turn.get("format"), "audio.input.format"))
            transcription = _object(turn.get("transcription"), "transcription")
        language = transcription.get("language")
        if isinstance(language, str) and language and not is_english(language):
            raise _config_error(f"language {language!r}: this server transcribes English (en)")
        settings = self.settings
        server_vad = self._server_vad
        if "turn_detection" in turn:
            detection = turn["turn_detection"]
            server_vad = detection is not None
            settings = self._turn_settings(_object(detection, "turn_detection"), server_vad)
        self.settings, self._server_vad, self._rate = settings, server_vad, rate
        if isinstance(model := transcription.get("model"), str) and model:
            self._model = model
        if isinstance(prompt := transcription.get("prompt"), str):
            self._prompt = prompt

    def _format_rate(self, audio_format: dict[str, Any]) -> int:
        kind = audio_format.get("type", "audio/pcm")
        if kind != "audio/pcm":
            raise _config_error(f"audio format {kind!r}: only audio/pcm (16-bit) is served")
        rate = audio_format.get("rate", self._rate)
        if not isinstance(rate, int) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise _config_error(
                f"audio rate {rate!r} is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
            )
        return rate

    def _turn_settings(self, detection: dict[str, Any], server_vad: bool) -> SessionSettings:
        """server_vad's knobs as VAD settings; without turn detection, no gap ends a turn."""
        base = self._defaults
        if not server_vad:
            return base.model_copy(update={"end_turns": False})
        kind = detection.get("type", "server_vad")
        if kind not in ("server_vad", "semantic_vad"):
            raise _config_error(f"turn_detection type {kind!r} is not served")
        values: dict[str, Any] = base.model_dump()
        silence_ms = detection.get("silence_duration_ms")
        if silence_ms is not None:
            if not isinstance(silence_ms, int | float) or not 50 <= silence_ms <= 30_000:
                raise _config_error("silence_duration_ms must be from 50 to 30000")
            large_gap = silence_ms / 1000
            # The cut inside a turn stays shorter than the pause that ends it.
            small_gap = min(base.small_gap, large_gap / 2)
            values |= {
                "large_gap": large_gap,
                "small_gap": small_gap,
                "hangover": min(base.hangover, small_gap),
            }
        threshold = detection.get("threshold")
        if threshold is not None:
            if not isinstance(threshold, int | float) or not 0 < threshold < 1:
                raise _config_error("threshold must be between 0 and 1")
            values |= {
                "speech_threshold": threshold,
                "silence_threshold": min(base.silence_threshold, threshold * 0.7),
            }
        try:
            return SessionSettings.model_validate(values)
        except ValidationError as exc:
            raise _config_error(f"invalid turn_detection: {describe(exc)}") from exc

    def _session(self) -> dict[str, Any]:
        s = self.settings
        detection = (
            {
                "type": "server_vad",
                "threshold": s.speech_threshold,
                "prefix_padding_ms": round(s.max_leading_silence * 1000),
                "silence_duration_ms": round(s.large_gap * 1000),
            }
            if self._server_vad
            else None
        )
        transcription = {"model": self._model, "language": "en", "prompt": self._prompt}
        common = {"id": "sess_stt_server", "object": "realtime.transcription_session"}
        if self._beta:
            return {
                **common,
                "input_audio_format": "pcm16",
                "input_audio_transcription": transcription,
                "turn_detection": detection,
                "input_audio_noise_reduction": None,
                "include": None,
            }
        audio_input = {
            "format": {"type": "audio/pcm", "rate": self._rate},
            "transcription": transcription,
            "noise_reduction": None,
            "turn_detection": detection,
        }
        return {"type": "transcription", **common, "audio": {"input": audio_input}, "include": None}

    # --- server → client ---

    def render(self, event: AsrOutput) -> list[str]:
        clearing = bool(self._flushes) and self._flushes[0] == "clear"
        if isinstance(event, SpeechStart):
            if clearing or not self._server_vad:
                return []
            self._started = True
            return [
                self._event(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=round(event.time * 1000),
                    item_id=self._open_item(),
                )
            ]
        if not event.is_final:
            if clearing:
                return []
            words = event.text.split()
            return self._delta(" ".join(words[:-1] if event.interim else words))
        if event.flushed and self._flushes and self._flushes.popleft() == "clear":
            self._close_item()  # answered with input_audio_buffer.cleared already
            return []
        return self._complete(event)

    def _complete(self, event: Transcript) -> list[str]:
        item = self._open_item()
        events: list[str] = []
        if self._started:
            events.append(
                self._event(
                    "input_audio_buffer.speech_stopped",
                    audio_end_ms=round(event.end * 1000),
                    item_id=item,
                )
            )
        events.append(
            self._event(
                "input_audio_buffer.committed", previous_item_id=self._previous, item_id=item
            )
        )
        events += self._delta(event.text)
        events.append(
            self._event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item,
                content_index=0,
                transcript=event.text,
                usage={"type": "duration", "seconds": round(max(0.0, event.end - event.start), 3)},
            )
        )
        self._previous = item
        self._close_item()
        return events

    def _delta(self, text: str) -> list[str]:
        """The words of `text` past what was sent, if `text` extends it."""
        sent = self._sent
        if not text or len(text) <= len(sent) or not text.startswith(sent):
            return []
        if sent and text[len(sent)] != " ":
            return []  # the last word sent has changed since
        self._sent = text
        return [
            self._event(
                "conversation.item.input_audio_transcription.delta",
                item_id=self._open_item(),
                content_index=0,
                delta=text[len(sent) :],
            )
        ]

    def _open_item(self) -> str:
        if self._item is None:
            self._item = f"item_{next(self._item_ids):06d}"
        return self._item

    def _close_item(self) -> None:
        self._item, self._started, self._sent = None, False, ""

    def _event(self, kind: str, **fields: Any) -> str:
        return json.dumps({"type": kind, "event_id": f"event_{next(self._event_ids)}", **fields})

    def error(self, response: ErrorResponse) -> str:
        return error_event(response)

    def closing(self) -> list[str]:
        return []
