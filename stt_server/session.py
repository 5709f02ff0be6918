"""One WebSocket connection: decode client messages, run VAD → ASR → Sink, report errors."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from stt_server.audio import SAMPLE_RATE, Audio, StreamConverter, decode_base64
from stt_server.config import SessionSettings
from stt_server.pipeline import DEFAULT_QUEUE_SIZE, Pipeline
from stt_server.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    AudioFrame,
    EndOfStream,
    ErrorCode,
    ErrorResponse,
    ProtocolError,
    TranscriptionSegment,
    close_code,
    error_response,
)
from stt_server.stages.asr import AsrStage, Transcriber
from stt_server.stages.sink import SinkStage
from stt_server.stages.vad import SileroModel, VadStage

log = logging.getLogger("stt_server.session")

# Frames bigger than this are decoded and resampled in a worker thread, not on the event loop.
_INLINE_DECODE_BYTES = 64 * 1024


class ClientChannel:
    """Sends to one WebSocket; the sink and the receive loop share it, so sends are serialised.

    A send that cannot complete within `send_timeout` seconds (the client stopped reading and
    the transport's buffer is full) raises `CLIENT_NOT_READING`, so what the server holds for
    such a client stays bounded: the stage queues, and the transport's buffer (its high-water
    mark plus the last message written).
    """

    def __init__(self, websocket: WebSocket, send_timeout: float = 0.0) -> None:
        self._websocket = websocket
        self._lock = asyncio.Lock()
        self._timeout = send_timeout or None
        self.stalled = False

    async def send(self, message: TranscriptionSegment | ErrorResponse) -> None:
        if self.stalled:
            raise _not_reading()
        try:
            async with asyncio.timeout(self._timeout), self._lock:
                await self._websocket.send_text(message.to_json())
        except TimeoutError:
            self.stalled = True
            raise _not_reading() from None

    async def close(self, code: int, reason: str = "") -> None:
        if self._websocket.application_state is not WebSocketState.CONNECTED:
            return
        # The close frame queues behind unsent data: for a client that does not read, give up
        # after the send timeout (the session ends; the socket closes once the client reads
        # its backlog or goes away).
        with contextlib.suppress(RuntimeError, OSError, TimeoutError):  # the client left first
            async with asyncio.timeout(self._timeout):
                await self._websocket.close(code=code, reason=reason[:120])


def _not_reading() -> ProtocolError:
    return ProtocolError(ErrorCode.CLIENT_NOT_READING, "client not reading")


class InputEnd(enum.Enum):
    """Why a session stopped reading client input, and so how it ends."""

    CLIENT_LEFT = "client closed"
    END_OF_STREAM = "end of stream"
    IDLE = "idle timeout"
    TOO_LONG = "session too long"
    SHUTDOWN = "server shutting down"


# How each ending that finishes the input is reported: an error code (if any), then the close.
_ENDINGS: dict[InputEnd, tuple[ErrorCode | None, int]] = {
    InputEnd.END_OF_STREAM: (None, CLOSE_NORMAL),
    InputEnd.IDLE: (ErrorCode.IDLE_TIMEOUT, close_code(ErrorCode.IDLE_TIMEOUT)),
    InputEnd.TOO_LONG: (ErrorCode.SESSION_TOO_LONG, close_code(ErrorCode.SESSION_TOO_LONG)),
    InputEnd.SHUTDOWN: (None, CLOSE_GOING_AWAY),
}


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

    def parse_text(self, text: str) -> AudioFrame | EndOfStream:
        try:
            data = json.loads(text)
        # JSONDecodeError is a ValueError; so is an integer over Python's digit limit, and
        # RecursionError comes from nesting deeper than the parser's stack.
        except (ValueError, RecursionError) as exc:
            raise ProtocolError(
                ErrorCode.INVALID_JSON, f"message is not valid JSON: {exc}"
            ) from exc
        if not isinstance(data, dict):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "message must be a JSON object")
        kind = data.get("type", "audio")
        if kind == "end":
            return EndOfStream()
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
    """Owns one connection's receive loop and pipeline.

    The session reads client messages until the input ends (see `InputEnd`). When the client
    left, everything is cancelled; otherwise the input is finished like end of stream (the VAD
    flushes its buffer, the open turn gets its final), then the connection is closed with the
    code of that ending. A failing stage or engine ends the session with an error instead.
    """

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
        idle_timeout: float = 0.0,
        max_seconds: float = 0.0,
        send_timeout: float = 0.0,
    ) -> None:
        self.id = session_id
        self.stats = SessionStats()
        self._websocket = websocket
        self._channel = ClientChannel(websocket, send_timeout)
        self._decoder = MessageDecoder(settings, max_message_bytes)
        self._sink = SinkStage(self._channel.send, queue_size=queue_size)
        self._pipeline: Pipeline = (
            VadStage(vad_model, settings, queue_size=queue_size)
            + AsrStage(transcribe, settings, queue_size=queue_size)
            + self._sink
        )
        self._idle_timeout = idle_timeout
        self._max_seconds = max_seconds
        self._stop: InputEnd | None = None
        self._waiting: asyncio.Timeout | None = None  # the receive in progress, if any

    def stop(self, reason: InputEnd) -> None:
        """Stop reading input (interrupting a receive in progress) and finish the session."""
        if self._stop is None:
            self._stop = reason
        # An expiring timeout is already ending the receive (and cannot be rescheduled).
        if self._waiting is not None and not self._waiting.expired():
            self._waiting.reschedule(asyncio.get_running_loop().time())

    async def run(self) -> None:
        started = time.monotonic()
        client = self._websocket.client
        log.info(
            "session %s start client=%s", self.id, f"{client.host}:{client.port}" if client else "?"
        )
        self._pipeline.start()
        receiver = asyncio.create_task(self._receive(), name=f"receive:{self.id}")
        joiner = asyncio.create_task(self._pipeline.join(), name=f"pipeline:{self.id}")
        outcome = InputEnd.CLIENT_LEFT.value
        try:
            done, _ = await asyncio.wait({receiver, joiner}, return_when=asyncio.FIRST_COMPLETED)
            error = _first_error(done)
            if error is None and receiver in done:
                ending = receiver.result()
                outcome = ending.value
                if ending is not InputEnd.CLIENT_LEFT:
                    try:
                        await self._drain(joiner)
                        await self._finish(ending)
                    except Exception as exc:
                        error = exc
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

    async def _receive(self) -> InputEnd:
        """Read client messages until the input ends; bad messages get an error and are skipped.

        Each receive waits at most the idle timeout (measured from when the server is ready to
        read, so backpressure from a busy pipeline never counts as client idleness) and never
        past the session's maximum length; `stop` cuts it short.
        """
        loop = asyncio.get_running_loop()
        session_end = loop.time() + self._max_seconds if self._max_seconds else None
        while self._stop is None:
            idle_end = loop.time() + self._idle_timeout if self._idle_timeout else None
            deadline = min((t for t in (idle_end, session_end) if t is not None), default=None)
            try:
                async with asyncio.timeout_at(deadline) as self._waiting:
                    message = await self._websocket.receive()
            except TimeoutError:
                if self._stop is None:
                    too_long = session_end is not None and loop.time() >= session_end
                    self._stop = InputEnd.TOO_LONG if too_long else InputEnd.IDLE
                break
            finally:
                self._waiting = None
            if message["type"] == "websocket.disconnect":
                return InputEnd.CLIENT_LEFT
            self.stats.messages += 1
            try:
                audio = await self._decode(message.get("text"), message.get("bytes"))
            except ProtocolError as exc:
                self.stats.errors += 1
                await self._channel.send(exc.response())
                continue
            if audio is None:
                return InputEnd.END_OF_STREAM
            if audio.size:
                self.stats.audio_samples += audio.size
                await self._pipeline.put(audio)
        return self._stop

    async def _decode(self, text: str | None, data: bytes | None) -> Audio | None:
        """The message's audio, or None for end of stream."""
        if text is not None:
            self._decoder.check_size(len(text))
            frame = self._decoder.parse_text(text)
            if isinstance(frame, EndOfStream):
                return None
            if len(frame.samples) > _INLINE_DECODE_BYTES:
                return await asyncio.to_thread(self._decoder.frame_audio, frame)
            return self._decoder.frame_audio(frame)
        if data is not None:
            self._decoder.check_size(len(data))
            if len(data) > _INLINE_DECODE_BYTES:
                return await asyncio.to_thread(self._decoder.binary_audio, data)
            return self._decoder.binary_audio(data)
        return np.zeros(0, dtype=np.float32)

    async def _drain(self, joiner: asyncio.Task[None]) -> None:
        """Finish the input: the sentinel makes every stage flush, then stop. The sentinel is put
        from a task so that a stage failing meanwhile (its queue never emptied) cannot hang it."""
        closer = asyncio.create_task(self._pipeline.close(), name=f"close:{self.id}")
        try:
            await joiner
        finally:
            closer.cancel()
            await asyncio.gather(closer, return_exceptions=True)

    async def _finish(self, ending: InputEnd) -> None:
        """Everything the client sent has been transcribed and sent: say why, then close."""
        code, close = _ENDINGS[ending]
        if code is not None:
            self.stats.errors += 1
            await self._channel.send(ErrorResponse(error=ending.value, code=code))
        await self._channel.close(close, ending.value)

    async def _fail(self, exc: BaseException) -> None:
        """Tell the client what went wrong (if it is still there) and close this session only."""
        response = error_response(exc)
        if response.code is ErrorCode.INTERNAL_ERROR:
            log.error("session %s failed", self.id, exc_info=exc)
        elif response.code is ErrorCode.CLIENT_NOT_READING:
            log.warning("session %s: client not reading; closing", self.id)
        self.stats.errors += 1
        try:
            await self._channel.send(response)
        except Exception:
            log.debug("session %s: could not deliver %s", self.id, response.code)
        await self._channel.close(close_code(response.code), response.error)


def _first_error(tasks: Iterable[asyncio.Task[Any]]) -> BaseException | None:
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            return error
    return None
