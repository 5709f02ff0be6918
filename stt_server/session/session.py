"""One WebSocket connection: read commands, run VAD → ASR → Sink, report errors, end cleanly."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from stt_server import metrics
from stt_server.audio import SAMPLE_RATE
from stt_server.errors import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    ErrorCode,
    ProtocolError,
    close_code,
)
from stt_server.pipeline import Pipeline
from stt_server.protocol import ErrorResponse, error_response
from stt_server.session.channel import ClientChannel
from stt_server.session.dialect import (
    Command,
    Dialect,
    EndOfInput,
    Flush,
    KeepAlive,
    Reconfigure,
    Reply,
)
from stt_server.settings import ServerSettings, SessionSettings
from stt_server.stages import vad
from stt_server.stages.asr import AsrOutput, AsrStage, Inference
from stt_server.stages.silero import VadBatcher
from stt_server.stages.sink import SinkStage
from stt_server.stages.vad import VadStage

log = logging.getLogger("stt_server.session")

# Messages bigger than this are decoded and resampled in a worker thread, not on the event loop.
_INLINE_DECODE_BYTES = 64 * 1024


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


class Session:
    """Owns one connection's receive loop and pipeline.

    The session reads client messages until the input ends (see `InputEnd`). When the client
    left, everything is cancelled; otherwise the input is finished like end of stream (the VAD
    flushes its buffer, the open turn gets its final), then the connection is closed with the
    code of that ending. A failing stage or engine ends the session with an error instead.
    """

    def __init__(
        self,
        websocket: WebSocket,
        channel: ClientChannel,
        dialect: Dialect,
        settings: SessionSettings,
        server: ServerSettings,
        *,
        session_id: str,
        batcher: VadBatcher,
        inference: Inference,
    ) -> None:
        self.id = session_id
        self.dialect = dialect
        self.stats = SessionStats()
        self._websocket = websocket
        self._channel = channel
        self._server = server
        self._sink = SinkStage(self._send, queue_size=server.queue_size)
        self._pipeline: Pipeline = (
            VadStage(batcher, settings, queue_size=server.queue_size)
            + AsrStage(inference, settings, queue_size=server.queue_size)
            + self._sink
        )
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
        endpoint = self.dialect.endpoint
        log.info(
            "session %s start endpoint=%s client=%s",
            self.id,
            endpoint,
            f"{client.host}:{client.port}" if client else "?",
        )
        metrics.SESSIONS_STARTED.labels(endpoint).inc()
        metrics.SESSIONS_OPEN.labels(endpoint).inc()
        self._pipeline.start()
        receiver = asyncio.create_task(self._receive(), name=f"receive:{self.id}")
        joiner = asyncio.create_task(self._pipeline.join(), name=f"pipeline:{self.id}")
        outcome, close = InputEnd.CLIENT_LEFT.value, 1005
        try:
            done, _ = await asyncio.wait({receiver, joiner}, return_when=asyncio.FIRST_COMPLETED)
            error = _first_error(done)
            if error is None and receiver in done:
                ending = receiver.result()
                outcome = ending.value
                if ending is not InputEnd.CLIENT_LEFT:
                    try:
                        await self._drain(joiner)
                        close = await self._finish(ending)
                    except Exception as exc:
                        error = exc
            # A disconnect noticed while sending is the client leaving, not a failure.
            if error is not None and not isinstance(error, WebSocketDisconnect):
                response = error_response(error)
                outcome = response.code.value
                close = await self._fail(error, response)
        finally:
            receiver.cancel()
            joiner.cancel()
            await asyncio.gather(receiver, joiner, return_exceptions=True)
            await self._pipeline.cancel()
            self.stats.segments = self._sink.sent
            metrics.SESSIONS_OPEN.labels(endpoint).dec()
            metrics.SESSIONS_ENDED.labels(endpoint, outcome.split(" ")[0], str(close)).inc()
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

    async def _send(self, event: AsrOutput) -> None:
        for text in self.dialect.render(event):
            await self._channel.send(text)

    async def report(self, exc: ProtocolError) -> None:
        """Tell the client about a bad message; the session goes on."""
        self.stats.errors += 1
        metrics.ERRORS.labels(exc.code.value).inc()
        await self._channel.send(self.dialect.error(error_response(exc)))

    async def _receive(self) -> InputEnd:
        """Send the dialect's opening, then read client messages until the input ends; bad
        messages get an error and are skipped.

        Each receive waits at most the idle timeout (measured from when the server is ready to
        read, so backpressure from a busy pipeline never counts as client idleness) and never
        past the session's maximum length; `stop` cuts it short.
        """
        for text in self.dialect.opening():
            await self._channel.send(text)
        loop = asyncio.get_running_loop()
        idle_timeout = self._server.idle_timeout
        max_seconds = self._server.max_session_seconds
        session_end = loop.time() + max_seconds if max_seconds else None
        while self._stop is None:
            idle_end = loop.time() + idle_timeout if idle_timeout else None
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
            received = time.monotonic()
            if message["type"] == "websocket.disconnect":
                return InputEnd.CLIENT_LEFT
            self.stats.messages += 1
            text, data = message.get("text"), message.get("bytes")
            try:
                commands = await self._decode(text, data)
            except ProtocolError as exc:
                await self.report(exc)
                continue
            for command in commands:
                if isinstance(command, EndOfInput):
                    return InputEnd.END_OF_STREAM
                if isinstance(command, Flush):
                    await self._pipeline.put(vad.Flush(received))
                elif isinstance(command, Reconfigure):
                    await self._pipeline.put(vad.Reconfigure(command.settings))
                elif isinstance(command, Reply):
                    for text in command.messages:
                        await self._channel.send(text)
                elif not isinstance(command, KeepAlive) and command.size:
                    self.stats.audio_samples += command.size
                    metrics.AUDIO_SECONDS.inc(command.size / SAMPLE_RATE)
                    await self._pipeline.put(command)
        return self._stop

    async def _decode(self, text: str | None, data: bytes | None) -> list[Command]:
        size = len(text) if text is not None else len(data) if data is not None else 0
        metrics.MESSAGES_IN.labels("text" if text is not None else "binary").inc()
        metrics.BYTES_IN.inc(size)
        if size > self._server.max_message_bytes:
            raise ProtocolError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"message of {size} bytes exceeds the limit of "
                f"{self._server.max_message_bytes} bytes",
            )
        if size > _INLINE_DECODE_BYTES:
            return await asyncio.to_thread(self.dialect.decode, text, data)
        return self.dialect.decode(text, data)

    async def _drain(self, joiner: asyncio.Task[None]) -> None:
        """Finish the input: the sentinel makes every stage flush, then stop. The sentinel is put
        from a task so that a stage failing meanwhile (its queue never emptied) cannot hang it."""
        closer = asyncio.create_task(self._pipeline.close(), name=f"close:{self.id}")
        try:
            await joiner
        finally:
            closer.cancel()
            await asyncio.gather(closer, return_exceptions=True)

    async def _finish(self, ending: InputEnd) -> int:
        """Everything the client sent has been transcribed and sent: say why, then close."""
        code, close = _ENDINGS[ending]
        for text in self.dialect.closing():
            await self._channel.send(text)
        if code is not None:
            self.stats.errors += 1
            metrics.ERRORS.labels(code.value).inc()
            await self._channel.send(
                self.dialect.error(ErrorResponse(error=ending.value, code=code))
            )
        await self._channel.close(close, ending.value)
        return close

    async def _fail(self, exc: BaseException, response: ErrorResponse) -> int:
        """Tell the client what went wrong (if it is still there) and close this session only."""
        if response.code is ErrorCode.INTERNAL_ERROR:
            log.error("session %s failed", self.id, exc_info=exc)
        elif response.code is ErrorCode.CLIENT_NOT_READING:
            log.warning("session %s: client not reading; closing", self.id)
        self.stats.errors += 1
        metrics.ERRORS.labels(response.code.value).inc()
        try:
            await self._channel.send(self.dialect.error(response))
        except Exception:
            log.debug("session %s: could not deliver %s", self.id, response.code)
        close = close_code(response.code)
        await self._channel.close(close, response.error)
        return close


def _first_error(tasks: Iterable[asyncio.Task[Any]]) -> BaseException | None:
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            return error
    return None
