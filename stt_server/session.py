"""One WebSocket connection: decode client messages, run VAD → ASR → Sink, report errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from stt_server.audio import SAMPLE_RATE, Audio, StreamConverter, decode_base64
from stt_server.config import SessionSettings
from stt_server.pipeline import DEFAULT_QUEUE_SIZE, Pipeline
from stt_server.protocol import (
    AudioFrame,
    ErrorCode,
    ErrorResponse,
    ProtocolError,
    TranscriptionSegment,
    error_response,
)
from stt_server.stages.asr import AsrStage, Transcriber
from stt_server.stages.sink import SinkStage
from stt_server.stages.vad import SileroModel, VadStage

log = logging.getLogger("stt_server.session")

# Frames bigger than this are decoded and resampled in a worker thread, not on the event loop.
_INLINE_DECODE_BYTES = 64 * 1024

CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011


class ClientChannel:
    """Sends to one WebSocket; the sink and the receive loop share it, so sends are serialised."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._lock = asyncio.Lock()

    async def send(self, message: TranscriptionSegment | ErrorResponse) -> None:
        async with self._lock:
            await self._websocket.send_text(message.to_json())

    async def close(self, code: int, reason: str = "") -> None:
        if self._websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, OSError):  # the client left first
                await self._websocket.close(code=code, reason=reason[:120])


@dataclass
class SessionStats:
    messages: int = 0
    audio_samples: int = 0  # after conversion to 16 kHz mono
    segments: int = 0
    errors: int = 0

    @property
    def audio_seconds(self) -> float:
        return self.audio_samples / SAMPLE_RATE


class MessageDecoder:
    """Client message (text JSON or binary PCM) → 16 kHz mono audio, or a `ProtocolError`."""

    def __init__(self, settings: SessionSettings, max_message_bytes: int) -> None:
        self._settings = settings
        self._max_bytes = max_message_bytes
        self._converter = StreamConverter()

    def check_size(self, size: int) -> None:
        if size > self._max_bytes:
            raise ProtocolError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"message of {size} bytes exceeds the limit of {self._max_bytes} bytes",
            )

    def parse_text(self, text: str) -> AudioFrame:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProtocolError(
                ErrorCode.INVALID_JSON, f"message is not valid JSON: {exc}"
            ) from exc
        if not isinstance(data, dict):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "message must be a JSON object")
        kind = data.get("type", "audio")
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

    def frame_audio(self, frame: AudioFrame) -> Audio:
        return self._converter.convert(
            decode_base64(frame.samples), frame.sample_rate, frame.channels
        )

    def binary_audio(self, data: bytes) -> Audio:
        return self._converter.convert(data, self._settings.sample_rate, self._settings.channels)


class TranscriptionSession:
    """Owns one connection's receive loop and pipeline; ends when the client leaves or on error."""

    def __init__(
        self,
        websocket: WebSocket,
        settings: SessionSettings,
        *,
        session_id: str,
        vad_model: SileroModel,
        transcribe: Transcriber,
        max_message_bytes: int,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        self.id = session_id
        self.stats = SessionStats()
        self._websocket = websocket
        self._channel = ClientChannel(websocket)
        self._decoder = MessageDecoder(settings, max_message_bytes)
        self._sink = SinkStage(self._channel.send, queue_size=queue_size)
        self._pipeline: Pipeline = (
            VadStage(vad_model, settings, queue_size=queue_size)
            + AsrStage(transcribe, settings, queue_size=queue_size)
            + self._sink
        )

    async def run(self) -> None:
        started = time.monotonic()
        client = self._websocket.client
        log.info(
            "session %s start client=%s", self.id, f"{client.host}:{client.port}" if client else "?"
        )
        self._pipeline.start()
        receiver = asyncio.create_task(self._receive(), name=f"receive:{self.id}")
        joiner = asyncio.create_task(self._pipeline.join(), name=f"pipeline:{self.id}")
        outcome = "client closed"
        try:
            done, _ = await asyncio.wait({receiver, joiner}, return_when=asyncio.FIRST_COMPLETED)
            error = _first_error(done)
            # A disconnect noticed while sending is the client leaving, not a failure.
            if error is not None and not isinstance(error, WebSocketDisconnect):
                outcome = f"error {type(error).__name__}: {error}"
                await self._fail(error)
        finally:
            receiver.cancel()
            joiner.cancel()
            await asyncio.gather(receiver, joiner, return_exceptions=True)
            await self._pipeline.cancel()
            self.stats.segments = self._sink.sent
            log.info(
                "session %s end (%s) duration=%.1fs audio=%.2fs messages=%d segments=%d errors=%d",
                self.id,
                outcome,
                time.monotonic() - started,
                self.stats.audio_seconds,
                self.stats.messages,
                self.stats.segments,
                self.stats.errors,
            )

    async def _receive(self) -> None:
        """Read client messages until it disconnects; bad messages get an error and are skipped."""
        while True:
            message = await self._websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            self.stats.messages += 1
            try:
                audio = await self._decode(message.get("text"), message.get("bytes"))
            except ProtocolError as exc:
                self.stats.errors += 1
                await self._channel.send(exc.response())
                continue
            if audio.size:
                self.stats.audio_samples += audio.size
                await self._pipeline.put(audio)

    async def _decode(self, text: str | None, data: bytes | None) -> Audio:
        if text is not None:
            self._decoder.check_size(len(text))
            frame = self._decoder.parse_text(text)
            if len(frame.samples) > _INLINE_DECODE_BYTES:
                return await asyncio.to_thread(self._decoder.frame_audio, frame)
            return self._decoder.frame_audio(frame)
        if data is not None:
            self._decoder.check_size(len(data))
            if len(data) > _INLINE_DECODE_BYTES:
                return await asyncio.to_thread(self._decoder.binary_audio, data)
            return self._decoder.binary_audio(data)
        return np.zeros(0, dtype=np.float32)

    async def _fail(self, exc: BaseException) -> None:
        """Tell the client what went wrong (if it is still there) and close this session only."""
        response = error_response(exc)
        if response.code is ErrorCode.INTERNAL_ERROR:
            log.error("session %s failed", self.id, exc_info=exc)
        self.stats.errors += 1
        try:
            await self._channel.send(response)
        except Exception:
            log.debug("session %s: could not deliver %s", self.id, response.code)
        await self._channel.close(CLOSE_INTERNAL_ERROR, response.error)


def _first_error(tasks: set[asyncio.Task[None]]) -> BaseException | None:
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            return error
    return None
