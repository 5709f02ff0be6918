"""A client that does not read is closed; the others carry on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import numpy as np
import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.http11 import Response
from websockets.uri import parse_uri

from stt_server.audio import encode_pcm16
from tests.stt_server.limited import (
    END,
    HELLO_FINAL,
    ScriptedEngine,
    growing,
    limited_server,
    open_sessions,
    read_until_closed,
    send_audio,
    url,
)
from tests.stt_server.speech import make_recording
from tests.stt_server.test_server import wait_until

# --- clients that do not read --------------------------------------------------------------------


class RawClient:
    """A WebSocket client over a plain socket (websockets' sans-I/O protocol), so that "not
    reading" really leaves the bytes unread: a small receive buffer, no library reading ahead."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol: ClientProtocol | None = None

    @classmethod
    async def connect(cls, address: str) -> RawClient:
        host, port = address.split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: no autotuning
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        # A small stream limit: the stream stops reading its socket after 4 KiB.
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        client = cls(reader, writer)
        client.protocol = ClientProtocol(parse_uri(url(address)), max_size=None)
        client.protocol.send_request(client.protocol.connect())
        await client.flush()
        while not any(isinstance(e, Response) for e in client.protocol.events_received()):
            client.protocol.receive_data(await reader.read(4096))
        return client

    async def flush(self) -> None:
        assert self.protocol is not None
        self.writer.write(b"".join(self.protocol.data_to_send()))
        await self.writer.drain()

    async def send(self, data: bytes) -> None:
        assert self.protocol is not None
        self.protocol.send_binary(data)
        await self.flush()

    async def read_until_closed(self) -> tuple[int, str]:
        """Read (and discard) everything until the server's close frame: its code and reason."""
        assert self.protocol is not None
        while self.protocol.close_rcvd is None:
            data = await self.reader.read(1 << 20)
            if not data:
                return 1006, ""
            self.protocol.receive_data(data)
            self.protocol.events_received()
        return self.protocol.close_rcvd.code, self.protocol.close_rcvd.reason


async def test_a_client_that_does_not_read_is_closed_and_others_carry_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="stt_server.session")
    loud = make_recording(
        ("Open the window please.", "Then close the door behind you."), (0.5, 0.5)
    )
    loud_audio = loud.audio / np.max(np.abs(loud.audio)) * 0.9
    quiet = make_recording(("Open the window please.",), (2.0,))
    engine = ScriptedEngine(growing(256 << 10))  # each loud chunk: a tentative 256 KiB longer
    with limited_server(engine=engine, send_timeout=2.0) as address:
        stalled = await RawClient.connect(address)

        async def talk() -> None:
            with contextlib.suppress(OSError):
                while True:
                    for offset in range(0, len(loud_audio), 320):
                        await stalled.send(encode_pcm16(loud_audio[offset : offset + 320]))

        talker = asyncio.create_task(talk())

        async def noticed() -> bool:
            return any("client not reading" in r.getMessage() for r in caplog.records)

        try:
            # Meanwhile another session streams and reads as usual.
            async with websockets.connect(url(address), max_size=None) as other:
                await send_audio(other, quiet.audio)
                await other.send(END)
                messages, code, _ = await read_until_closed(other, 30)
            assert messages[-1] == HELLO_FINAL
            assert code == 1000
            assert await wait_until(noticed, 30)
        finally:
            talker.cancel()
            await asyncio.gather(talker, return_exceptions=True)
        # Reading again (within the send timeout): the backlog, then the close frame.
        assert await asyncio.wait_for(stalled.read_until_closed(), 30) == (
            1008,
            "client not reading",
        )
        stalled.writer.close()

        async def none_open() -> bool:
            return await open_sessions(address) == 0

        assert await wait_until(none_open)
