"""The sending side of one WebSocket, shared by the sink and the receive loop."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.websockets import WebSocket, WebSocketState

from stt_server.errors import ErrorCode, ProtocolError


class ClientChannel:
    """Sends to one WebSocket; sends are serialised.

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

    async def send(self, text: str) -> None:
        if self.stalled:
            raise not_reading()
        try:
            async with asyncio.timeout(self._timeout), self._lock:
                await self._websocket.send_text(text)
        except TimeoutError:
            self.stalled = True
            raise not_reading() from None

    async def close(self, code: int, reason: str = "") -> None:
        if self._websocket.application_state is not WebSocketState.CONNECTED:
            return
        # The close frame queues behind unsent data: for a client that does not read, give up
        # after the send timeout (the session ends; the socket closes once the client reads
        # its backlog or goes away).
        with contextlib.suppress(RuntimeError, OSError, TimeoutError):  # the client left first
            async with asyncio.timeout(self._timeout):
                await self._websocket.close(code=code, reason=reason[:120])


def not_reading() -> ProtocolError:
    return ProtocolError(ErrorCode.CLIENT_NOT_READING, "client not reading")
