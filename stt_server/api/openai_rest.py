"""OpenAI's `POST /v1/audio/transcriptions`, as its API reference describes it: a multipart
upload in, the transcript as json, text, srt, vtt or verbose_json out, or as server-sent events
(`stream=true`) while the file is transcribed.

What each field does here:
- `file`: any container and codec soundfile or FFmpeg reads, any rate and channel count.
- `model`: any name is accepted (whisper-1, gpt-4o-transcribe, ...): the loaded engine serves it.
- `language`: English only (`en`, `en-US`, `english`); anything else is a 400.
- `prompt`, `temperature`, `include[]`, `chunking_strategy` and unknown fields: accepted and
  ignored (the engines take no prompt and decode greedily or with a fixed beam).
- `timestamp_granularities[]`: `segment` (the up-to-28 s requests the file was packed into); `word`
  is a 400, as no engine here gives word times.
Errors have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from stt_server.access import access_error
from stt_server.admission import Sessions
from stt_server.audio import SAMPLE_RATE
from stt_server.engines.base import is_english
from stt_server.errors import EngineError, ErrorCode
from stt_server.files import subtitles
from stt_server.files.decode import AudioTooLong, UndecodableAudio, decode_file
from stt_server.files.transcribe import Segment, transcribe_file
from stt_server.runtime import Runtime
from stt_server.settings import ServerSettings

log = logging.getLogger("stt_server.api")

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
# Room for the multipart framing and the text fields around the file.
_FORM_OVERHEAD = 64 * 1024


class Serving(Protocol):
    """What the endpoint needs of the server (app.py's `Server`)."""

    settings: ServerSettings
    sessions: Sessions
    runtime: Runtime | None


class ApiError(Exception):
    """An error answered with OpenAI's error body and `status`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"message": message, "type": kind, "param": param, "code": code}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.body}, status_code=self.status)


def openai_router(server: Serving) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/audio/transcriptions", response_model=None)
    async def transcriptions(request: Request) -> Response:
        try:
            return await _transcriptions(server, request)
        except ApiError as exc:
            return exc.response()

    return router


async def _transcriptions(server: Serving, request: Request) -> Response:
    settings = server.settings
    runtime = server.runtime
    if runtime is None or runtime.batcher is None or server.sessions.draining:
        raise ApiError(
            503, "the server is not serving (loading or shutting down)", kind="server_error"
        )
    refusal = access_error(
        settings.api_key, settings.allowed_origins, request.headers, request.query_params
    )
    if refusal is not None:
        forbidden = refusal.code is ErrorCode.ORIGIN_NOT_ALLOWED
        raise ApiError(
            403 if forbidden else 401,
            refusal.message,
            code="origin_not_allowed" if forbidden else "invalid_api_key",
        )
    limit = settings.max_upload_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + _FORM_OVERHEAD:
        raise _too_large(limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(400, "the request must be multipart/form-data with a `file` part")
    try:
        form = await request.form(max_files=8, max_fields=100)
    except HTTPException as exc:
        raise ApiError(400, f"malformed multipart body: {exc.detail}") from exc
    try:
        options = _Options.parse(form)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(
                400, "a `file` part is required", param="file", code="missing_required_parameter"
            )
        if upload.size is not None and upload.size > limit:
            raise _too_large(limit)
        data = await upload.read()
    finally:
        await form.close()
    if len(data) > limit:
        raise _too_large(limit)
    try:
        audio = await asyncio.to_thread(decode_file, data, settings.max_upload_seconds)
    except UndecodableAudio as exc:
        raise ApiError(
            400, f"cannot decode the file: {exc}", param="file", code="invalid_file"
        ) from exc
    except AudioTooLong as exc:
        raise ApiError(400, str(exc), param="file", code="audio_too_long") from exc
    duration = len(audio) / SAMPLE_RATE
    segments = transcribe_file(audio, runtime.batcher, runtime.pool)
    log.info(
        "transcription: %.1f s of audio, format=%s stream=%s",
        duration,
        options.response_format,
        options.stream,
    )
    if options.stream:
        return StreamingResponse(_events(segments, duration), media_type="text/event-stream")
    try:
        async with contextlib.aclosing(segments):
            done = [s async for s in segments]
    except EngineError as exc:
        raise ApiError(500, f"transcription failed: {exc}", kind="server_error") from exc
    return _render(options.response_format, done, duration)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the file is larger than this server's limit of {limit} bytes",
        param="file",
        code="file_too_large",
    )


class _Options:
    def __init__(self, response_format: str, stream: bool) -> None:
        self.response_format = response_format
        self.stream = stream

    @classmethod
    def parse(cls, form: FormData) -> _Options:
        def field(name: str) -> str | None:
            value = form.get(name)
            return value.strip() if isinstance(value, str) and value.strip() else None

        language = field("language")
        if language is not None and not is_english(language):
            raise ApiError(
                400,
                f"language {language!r} is not supported: this server transcribes English (en)",
                param="language",
                code="unsupported_language",
            )
        response_format = field("response_format") or "json"
        if response_format not in RESPONSE_FORMATS:
            raise ApiError(
                400,
                f"response_format {response_format!r} is not supported; use one of "
                + ", ".join(RESPONSE_FORMATS),
                param="response_format",
                code="invalid_value",
            )
        granularities = [g for g in form.getlist("timestamp_granularities[]") if isinstance(g, str)]
        if "word" in granularities:
            raise ApiError(
                400,
                "word timestamps are not available: this server's engines give segment times only",
                param="timestamp_granularities",
                code="invalid_value",
            )
        temperature = field("temperature")
        if temperature is not None:
            try:
                valid = 0.0 <= float(temperature) <= 1.0
            except ValueError:
                valid = False
            if not valid:
                raise ApiError(
                    400,
                    f"temperature {temperature!r} is not a number from 0 to 1",
                    param="temperature",
                    code="invalid_value",
                )
        stream = (field("stream") or "false").lower()
        if stream not in ("true", "false"):
            raise ApiError(
                400, f"stream {stream!r} is not true or false", param="stream", code="invalid_value"
            )
        return cls(response_format, stream == "true")


def _usage(duration: float) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(duration)}


def _render(response_format: str, segments: list[Segment], duration: float) -> Response:
    text = " ".join(s.text for s in segments)
    if response_format == "text":
        return PlainTextResponse(text + "\n")
    if response_format == "srt":
        return PlainTextResponse(subtitles.srt(segments))
    if response_format == "vtt":
        return PlainTextResponse(subtitles.vtt(segments), media_type="text/vtt")
    if response_format == "json":
        return JSONResponse({"text": text, "usage": _usage(duration)})
    return JSONResponse(
        {
            "task": "transcribe",
            "language": "english",
            "duration": round(duration, 3),
            "text": text,
            "segments": [_verbose_segment(n, s) for n, s in enumerate(segments)],
            "usage": _usage(duration),
        }
    )


def _verbose_segment(index: int, segment: Segment) -> dict[str, Any]:
    # The engines return text only: tokens and the decoder's statistics are not measured, so
    # they carry neutral values (empty, 0, 1) that no client filter rejects.
    return {
        "id": index,
        "seek": round(segment.start * 100),
        "start": round(segment.start, 3),
        "end": round(segment.end, 3),
        "text": segment.text,
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": 0.0,
        "compression_ratio": 1.0,
        "no_speech_prob": 0.0,
    }


async def _events(segments: AsyncGenerator[Segment], duration: float) -> AsyncIterator[str]:
    """`transcript.text.delta` per piece of the file as it is done, then `transcript.text.done`;
    a failure midway is an `error` event (the status line was sent long ago)."""
    texts: list[str] = []
    try:
        # Closed at once when the client leaves: the chunks still queued are cancelled.
        async with contextlib.aclosing(segments):
            async for segment in segments:
                delta = segment.text if not texts else " " + segment.text
                texts.append(segment.text)
                yield _sse({"type": "transcript.text.delta", "delta": delta, "logprobs": None})
    except EngineError as exc:
        error = {"message": f"transcription failed: {exc}", "type": "server_error"}
        yield _sse({"error": {**error, "param": None, "code": None}})
        return
    done = {"type": "transcript.text.done", "text": " ".join(texts), "logprobs": None}
    yield _sse({**done, "usage": _usage(duration)})


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event)}\n\n"
