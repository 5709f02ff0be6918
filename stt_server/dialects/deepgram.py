"""`/v1/listen`: Deepgram's live-streaming protocol, for its SDK, Pipecat and LiveKit Agents.

The query string configures the session (Deepgram's parameter names); binary messages are
16-bit PCM; text messages are `KeepAlive`, `Finalize` and `CloseStream`. The server answers with
`Results`, `SpeechStarted`, `UtteranceEnd` and, at the end, `Metadata`.

Deepgram's interim `Results` hold the text since the last final one; ours already carry the
whole turn, so each turn is one final `Results` (`speech_final` too: our turns end at the
endpoint) preceded by interims of that turn. Engines give no word times: each word gets a share
of the turn's speech proportional to its length (`spread_words`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse, Response

import stt_server
from stt_server.audio import SAMPLE_BYTES, StreamConverter
from stt_server.dialects.wire import convert, parse_json
from stt_server.errors import ErrorCode, ProtocolError
from stt_server.protocol import ErrorResponse
from stt_server.session.dialect import Command, EndOfInput, Flush, KeepAlive
from stt_server.settings import SessionSettings, describe
from stt_server.stages.asr import AsrOutput, Transcript
from stt_server.stages.silero import WINDOW_SECONDS
from stt_server.stages.vad import SpeechStart

# Endpointing shorter than this is raised to it: our engines transcribe whole turns, and a turn
# cut at every 25 ms pause (LiveKit's default) would split sentences into fragments that lose
# their context. It must also stay above the session's small gap (a pause that only cuts a chunk).
MIN_ENDPOINTING = 0.5  # seconds
# `endpointing=false`: turns end on Finalize, CloseStream or the longest gap settings allow.
MAX_ENDPOINTING = 30.0  # seconds; SessionSettings.large_gap's bound
CONFIDENCE = 1.0  # engines report none; Deepgram's field is required

# Parameters accepted whatever their value, because ignoring them changes nothing a client
# would notice (or they only describe the request).
IGNORED = frozenset(
    {
        "keywords",
        "keyterm",
        "tag",
        "filler_words",
        "no_delay",
        "mip_opt_out",
        "numerals",
        "version",
        "diarize_model",
        "language_hint",
        "extra",
        "alternatives",
        "callback_method",
    }
)
# Features accepted only when off: `false` (their default) is fine, anything else is refused.
OFF_ONLY = {
    "diarize": "speaker diarization is not supported",
    "multichannel": "multichannel transcription is not supported (channels are mixed to mono)",
    "detect_entities": "entity detection is not supported",
    "dictation": "dictation commands are not supported",
    "profanity_filter": "the profanity filter is not supported",
    "redact": "redaction is not supported",
}
# Features refused whenever they are asked for.
UNSUPPORTED = {
    "search": "search is not supported",
    "replace": "replace is not supported",
    "callback": "callbacks are not supported: read the results on this WebSocket",
}

# How a refused handshake is answered (Deepgram answers bad requests with HTTP 400).
_HTTP_STATUS = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.ORIGIN_NOT_ALLOWED: 403,
    ErrorCode.TOO_MANY_SESSIONS: 429,
    ErrorCode.SHUTTING_DOWN: 503,
}


class Word(BaseModel):
    word: str
    start: float
    end: float
    confidence: float
    punctuated_word: str | None = None


class Alternative(BaseModel):
    transcript: str
    confidence: float
    words: list[Word]


class Channel(BaseModel):
    alternatives: list[Alternative]


class ModelInfo(BaseModel):
    name: str
    version: str
    arch: str


class ResultMetadata(BaseModel):
    request_id: str
    model_info: ModelInfo
    model_uuid: str


class Results(BaseModel):
    type: Literal["Results"] = "Results"
    channel_index: list[int]
    duration: float
    start: float
    is_final: bool
    speech_final: bool
    from_finalize: bool
    channel: Channel
    metadata: ResultMetadata


class SpeechStarted(BaseModel):
    type: Literal["SpeechStarted"] = "SpeechStarted"
    channel: list[int]
    timestamp: float


class UtteranceEnd(BaseModel):
    type: Literal["UtteranceEnd"] = "UtteranceEnd"
    channel: list[int]
    last_word_end: float


class Metadata(BaseModel):
    type: Literal["Metadata"] = "Metadata"
    transaction_key: str = "deprecated"
    request_id: str
    sha256: str
    created: str
    duration: float
    channels: int
    models: list[str]
    model_info: dict[str, ModelInfo]


class Error(BaseModel):
    type: Literal["Error"] = "Error"
    variant: str = "error"
    code: str
    description: str
    message: str


@dataclass(frozen=True)
class Options:
    """What the query asked for that the dialect itself honours (the rest becomes settings)."""

    model: str
    interim_results: bool
    punctuate: bool
    vad_events: bool
    utterance_end: bool
    channels: int


def _flag(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = query.get(name)
    if value is None:
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _invalid(f"{name} must be true or false, not {value!r}")


def _integer(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise _invalid(f"{name} must be an integer, not {value!r}") from None


def _invalid(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_CONFIG, message)


def _milliseconds(name: str, value: str) -> int:
    try:
        milliseconds = int(value)
    except ValueError:
        raise _invalid(f"{name} must be a number of milliseconds, not {value!r}") from None
    if milliseconds < 0:
        raise _invalid(f"{name} must not be negative")
    return milliseconds


def _turn_gap(query: Mapping[str, str], floor: float) -> float | None:
    """Seconds of silence that end a turn (None: the server's default).

    `endpointing` (ms) sets it; without it `utterance_end_ms` does, so the `UtteranceEnd` that
    follows each turn comes when Deepgram's would; `endpointing=false` (or 0) leaves only
    Finalize, CloseStream and the longest gap. Values below `floor` are raised to it.
    """
    endpointing = query.get("endpointing", "").lower()
    if endpointing not in ("", "true", "false"):
        milliseconds = _milliseconds("endpointing", endpointing)
    elif "utterance_end_ms" in query:
        milliseconds = _milliseconds("utterance_end_ms", query["utterance_end_ms"])
    elif endpointing == "false":
        milliseconds = 0
    else:
        return None
    if milliseconds == 0:
        return MAX_ENDPOINTING
    return min(MAX_ENDPOINTING, max(floor, milliseconds / 1000))


def _check_refusals(query: Mapping[str, str]) -> None:
    encoding = query.get("encoding")
    if encoding is None:
        raise _invalid(
            "encoding is required: send raw PCM with encoding=linear16&sample_rate=N "
            "(containerised audio is not supported)"
        )
    if encoding.lower() != "linear16":
        raise _invalid(f"encoding {encoding!r} is not supported; use linear16")
    if "sample_rate" not in query:
        raise _invalid("sample_rate is required with encoding=linear16")
    language = query.get("language", "en")
    if language.lower() != "en" and not language.lower().startswith("en-"):
        raise _invalid(f"language {language!r} is not supported; this server transcribes English")
    for name, reason in OFF_ONLY.items():
        if name in query and query[name].lower() != "false":
            raise _invalid(f"{name}={query[name]}: {reason}")
    for name, reason in UNSUPPORTED.items():
        if name in query:
            raise _invalid(f"{name}: {reason}")


def open_deepgram(
    query: Mapping[str, str], defaults: SessionSettings
) -> tuple[SessionSettings, DeepgramDialect]:
    """The session settings and dialect for Deepgram's query parameters; `ProtocolError`
    (INVALID_CONFIG) names the parameter it refuses."""
    _check_refusals(query)
    sample_rate = _integer(query, "sample_rate")
    channels = _integer(query, "channels")
    channels = 1 if channels is None else channels
    interim_results = _flag(query, "interim_results")
    floor = max(MIN_ENDPOINTING, defaults.small_gap + WINDOW_SECONDS)
    overrides: dict[str, object] = {"sample_rate": sample_rate, "channels": channels}
    if (gap := _turn_gap(query, floor)) is not None:
        overrides["large_gap"] = gap
    if not interim_results:
        overrides["interim_interval"] = 0.0
    try:
        settings = SessionSettings.model_validate({**defaults.model_dump(), **overrides})
    except ValidationError as exc:  # validated by field name: sample_rate, channels
        raise _invalid(f"invalid parameters: {describe(exc)}") from exc
    options = Options(
        model=query.get("model", "stt-server"),
        interim_results=interim_results,
        punctuate=_flag(query, "punctuate") or _flag(query, "smart_format"),
        vad_events=_flag(query, "vad_events"),
        utterance_end="utterance_end_ms" in query,
        channels=channels,
    )
    return settings, DeepgramDialect(settings, options)


def plain_word(word: str) -> str:
    """A word as Deepgram writes it unpunctuated: lower case, no punctuation around it."""
    return word.strip("\"'“”‘’«».,;:!?…()[]{}-–—").lower()


def spread_words(words: list[str], start: float, end: float, punctuate: bool) -> list[Word]:
    """`words` over `start..end`, each taking a share proportional to its length (engines give
    no word times; longer words take longer to say)."""
    total = sum(len(w) for w in words)
    result: list[Word] = []
    position = 0
    for word in words:
        a = start + (end - start) * position / total
        position += len(word)
        b = start + (end - start) * position / total
        result.append(
            Word(
                word=plain_word(word),
                start=round(a, 3),
                end=round(b, 3),
                confidence=CONFIDENCE,
                punctuated_word=word if punctuate else None,
            )
        )
    return result


def refusal(response: ErrorResponse) -> Response:
    """A refused handshake as Deepgram answers one: an HTTP error with a JSON body (clients
    treat a 4xx at the handshake as final, where a close after accepting makes them retry)."""
    return JSONResponse(
        {
            "err_code": response.code.value,
            "err_msg": response.error,
            "request_id": str(uuid.uuid4()),
        },
        status_code=_HTTP_STATUS.get(response.code, 400),
        headers={"dg-error": response.error},
    )


def render_error(response: ErrorResponse) -> str:
    return Error(
        code=response.code.value, description=response.error, message=response.error
    ).model_dump_json(exclude_none=True)


class DeepgramDialect:
    endpoint = "deepgram"

    def __init__(self, settings: SessionSettings, options: Options) -> None:
        self._settings = settings
        self._options = options
        self._converter = StreamConverter()
        self._request_id = str(uuid.uuid4())
        self._created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self._model_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"stt-server:{options.model}"))
        self._model_info = ModelInfo(
            name=options.model, version=stt_server.__version__, arch="stt-server"
        )
        self._sha256 = hashlib.sha256()
        self._frames = 0  # PCM frames received, at the client's rate
        self._speech_start: float | None = None  # where the open turn's speech began

    def opening(self) -> list[str]:
        return []  # Deepgram says nothing until the first results

    def decode(self, text: str | None, data: bytes | None) -> list[Command]:
        if data is not None:
            s = self._settings
            audio = convert(self._converter, data, s.sample_rate, s.channels)
            self._sha256.update(data)
            self._frames += len(data) // (SAMPLE_BYTES * s.channels)
            return [audio]
        if text is None:
            return []
        message = parse_json(text)
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "KeepAlive":
            return [KeepAlive()]
        if kind == "Finalize":
            return [*self._tail(), Flush()]
        if kind == "CloseStream":
            return [*self._tail(), EndOfInput()]
        if kind is None:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, 'text messages must be JSON objects with a "type"'
            )
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            f"unsupported message type {kind!r}: expected KeepAlive, Finalize or CloseStream",
        )

    def _tail(self) -> list[Command]:
        """Before a flush or the end: the resampler's last milliseconds belong to this turn."""
        tail = self._converter.flush()
        return [tail] if tail.size else []

    def render(self, event: AsrOutput) -> list[str]:
        if isinstance(event, SpeechStart):
            self._speech_start = event.time
            if not self._options.vad_events:
                return []
            return [
                SpeechStarted(channel=[0], timestamp=round(event.time, 3)).model_dump_json(
                    exclude_none=True
                )
            ]
        if not event.is_final and not self._options.interim_results:
            return []
        messages = [self._results(event).model_dump_json(exclude_none=True)]
        if event.is_final:
            self._speech_start = None
            if self._options.utterance_end and event.text:
                end = UtteranceEnd(channel=[0, 1], last_word_end=round(event.end, 3))
                messages.append(end.model_dump_json(exclude_none=True))
        return messages

    def _results(self, event: Transcript) -> Results:
        punctuate = self._options.punctuate
        words = [w for w in event.text.split() if plain_word(w)]
        # Leading silence before the speech belongs to the chunk, not to the first word.
        speech_start = event.start
        if self._speech_start is not None and event.start <= self._speech_start < event.end:
            speech_start = self._speech_start
        spread = spread_words(words, speech_start, event.end, punctuate) if words else []
        transcript = " ".join(words) if punctuate else " ".join(w.word for w in spread)
        return Results(
            channel_index=[0, 1],
            duration=round(event.end - event.start, 3),
            start=round(event.start, 3),
            is_final=event.is_final,
            speech_final=event.is_end_of_turn,
            from_finalize=event.flushed,
            channel=Channel(
                alternatives=[
                    Alternative(transcript=transcript, confidence=CONFIDENCE, words=spread)
                ]
            ),
            metadata=ResultMetadata(
                request_id=self._request_id,
                model_info=self._model_info,
                model_uuid=self._model_uuid,
            ),
        )

    def error(self, response: ErrorResponse) -> str:
        return render_error(response)

    def closing(self) -> list[str]:
        metadata = Metadata(
            request_id=self._request_id,
            sha256=self._sha256.hexdigest(),
            created=self._created,
            duration=round(self._frames / self._settings.sample_rate, 3),
            channels=self._options.channels,
            models=[self._model_uuid],
            model_info={self._model_uuid: self._model_info},
        )
        return [metadata.model_dump_json(exclude_none=True)]
