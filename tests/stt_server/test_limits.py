"""Limits, access control, end of stream and drain: a real server on a loopback port, a scripted
engine (what is transcribed does not matter here, only when and whether), real WebSockets."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.http11 import Response
from websockets.uri import parse_uri

from stt_server.admission import Sessions
from stt_server.app import create_app
from stt_server.audio import SAMPLE_RATE, encode_pcm16
from stt_server.engines.base import Audio
from stt_server.settings import ServerSettings
from tests.conftest import serve
from tests.stt_server.speech import Recording, make_recording
from tests.stt_server.test_server import wait_until
from tests.support.engines import ScriptedEngine

END = json.dumps({"type": "end"})
HELLO_FINAL = {"text": "hello world", "isFinal": True, "isEndOfTurn": True}


def growing(loud_bytes: int) -> Callable[[Audio], str]:
    """Says 'hello world' for every chunk; for loud chunks (peak > 0.7) a different word of
    `loud_bytes` characters each time, so a turn's segments grow fast."""
    count = itertools.count(1)

    def answer(clip: Audio) -> str:
        n = next(count)
        loud = loud_bytes and float(np.max(np.abs(clip))) > 0.7
        return f"{n}{'x' * loud_bytes}" if loud else "hello world"

    return answer


@contextlib.contextmanager
def limited_server(engine: ScriptedEngine | None = None, **settings: Any) -> Iterator[str]:
    """A server with these `ServerSettings` fields; `POST /_drain` runs the shutdown drain."""
    config = ServerSettings(engine="fixed-cost", batch_wait_ms=5, **settings)
    sessions = Sessions(config.max_sessions)
    app = create_app(config, engine=engine or ScriptedEngine(), sessions=sessions)

    @app.post("/_drain")
    async def drain() -> bool:
        return await sessions.drain(10)

    with serve(app) as address:
        yield address


def url(address: str, query: str = "") -> str:
    return f"ws://{address}/ws/transcribe{query}"


@pytest.fixture(scope="module")
def speech() -> Recording:
    return make_recording(("Open the window please, then close the door behind you.",), (0.5,))


def opening(speech: Recording, seconds: float = 0.8) -> Audio:
    """The lead silence and the first `seconds` of speech: less than the VAD's minimum chunk
    and no pause, so nothing is transcribed until the input is finished."""
    return speech.audio[: int((speech.spans[0][0] + seconds) * SAMPLE_RATE)]


async def send_audio(ws: websockets.ClientConnection, audio: Audio, realtime: bool = False) -> None:
    for offset in range(0, len(audio), 320):
        await ws.send(encode_pcm16(audio[offset : offset + 320]))
        if realtime:
            await asyncio.sleep(0.02)


async def read_until_closed(
    ws: websockets.ClientConnection, seconds: float = 20
) -> tuple[list[dict[str, Any]], int | None, str | None]:
    """Every message until the server closes: (messages, close code, close reason)."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(seconds):
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                messages.append(json.loads(raw))
    return messages, ws.close_code, ws.close_reason


async def open_sessions(address: str) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"http://{address}/health")).json()["sessions"]


# --- end of stream -------------------------------------------------------------------------------


async def test_end_flushes_the_open_turn_then_closes_1000(speech: Recording) -> None:
    with limited_server() as address:
        async with websockets.connect(url(address)) as ws:
            await send_audio(ws, opening(speech))
            await ws.send(END)
            messages, code, _ = await read_until_closed(ws)
    assert messages[-1] == HELLO_FINAL
    assert all("code" not in m for m in messages)
    assert code == 1000


async def test_end_with_nothing_buffered_closes_1000_with_no_message() -> None:
    with limited_server() as address:
        async with websockets.connect(url(address)) as ws:
            await send_audio(ws, np.zeros(SAMPLE_RATE, np.float32))
            await ws.send(END)
            messages, code, _ = await read_until_closed(ws)
    assert (messages, code) == ([], 1000)


# --- idle timeout, session length ----------------------------------------------------------------


async def test_an_idle_client_gets_its_final_then_idle_timeout_and_1000(speech: Recording) -> None:
    with limited_server(idle_timeout=0.5) as address:
        async with websockets.connect(url(address)) as ws:
            await send_audio(ws, opening(speech))
            sent = time.monotonic()
            messages, code, reason = await read_until_closed(ws)
    assert time.monotonic() - sent >= 0.4
    assert messages[-2] == HELLO_FINAL  # the open turn is finished before the session ends
    assert messages[-1]["code"] == "IDLE_TIMEOUT"
    assert (code, reason) == (1000, "idle timeout")


async def test_a_client_that_keeps_sending_is_not_idle() -> None:
    with limited_server(idle_timeout=0.5) as address:
        async with websockets.connect(url(address)) as ws:
            await send_audio(ws, np.zeros(int(1.5 * SAMPLE_RATE), np.float32), realtime=True)
            await ws.send(END)
            messages, code, _ = await read_until_closed(ws)
    assert (messages, code) == ([], 1000)


async def test_waiting_on_a_busy_pipeline_is_not_client_idleness() -> None:
    """With inference held and one-item queues the server stops reading the socket; the
    client has sent everything meanwhile. Time spent so is backpressure, not idleness: when
    inference resumes, the rest is read and transcribed, and no IDLE_TIMEOUT comes."""
    turns = make_recording(("Open the window please.",) * 4, (0.5, 0.5, 0.5, 0.5))
    engine = ScriptedEngine()
    engine.gate.clear()
    try:
        with limited_server(engine=engine, idle_timeout=0.5, queue_size=1) as address:
            async with websockets.connect(url(address)) as ws:
                await send_audio(ws, turns.audio)
                await ws.send(END)
                # The condition under test is time passing: three idle timeouts, held back.
                await asyncio.sleep(1.5)
                engine.gate.set()
                messages, code, _ = await read_until_closed(ws, 60)
    finally:
        engine.gate.set()
    assert all("code" not in m for m in messages), messages
    assert messages[-1] == HELLO_FINAL
    assert code == 1000


async def test_a_session_past_its_length_gets_its_final_then_session_too_long(
    speech: Recording,
) -> None:
    with limited_server(max_session_seconds=1.0) as address:
        async with websockets.connect(url(address)) as ws:
            started = time.monotonic()
            # The client keeps talking at real-time pace; the server cuts it off mid-turn.
            sender = asyncio.create_task(send_audio(ws, speech.audio, realtime=True))
            try:
                messages, code, reason = await read_until_closed(ws)
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            elapsed = time.monotonic() - started
    assert messages[-2]["isFinal"]
    assert messages[-2]["isEndOfTurn"]
    assert messages[-1]["code"] == "SESSION_TOO_LONG"
    assert (code, reason) == (1008, "session too long")
    assert 0.9 <= elapsed < 5, elapsed


# --- concurrent sessions -------------------------------------------------------------------------


async def test_sessions_beyond_the_limit_get_too_many_sessions_and_1013() -> None:
    with limited_server(max_sessions=2) as address:
        async with websockets.connect(url(address)) as first, websockets.connect(url(address)):

            async def two_open() -> bool:
                return await open_sessions(address) == 2

            assert await wait_until(two_open)
            async with websockets.connect(url(address)) as third:
                messages, code, _ = await read_until_closed(third)
            assert [m["code"] for m in messages] == ["TOO_MANY_SESSIONS"]
            assert code == 1013

            await first.send(END)
            assert (await read_until_closed(first))[1] == 1000

            async def one_open() -> bool:
                return await open_sessions(address) == 1

            assert await wait_until(one_open)
            async with websockets.connect(url(address)) as fourth:
                await fourth.send(END)
                assert await read_until_closed(fourth) == ([], 1000, "end of stream")


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


# --- access: API key, allowed origins ------------------------------------------------------------

KEY = "s3cret-key"


async def session_outcome(
    address: str, query: str = "", headers: dict[str, str] | None = None, origin: str | None = None
) -> tuple[list[str], int | None]:
    """Connect, send end, and return the error codes received and the close code."""
    async with websockets.connect(
        url(address, query),
        additional_headers=headers,
        origin=None if origin is None else websockets.Origin(origin),
    ) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(END)
        messages, code, _ = await read_until_closed(ws)
    return [m["code"] for m in messages if "code" in m], code


@pytest.mark.parametrize(
    ("query", "headers", "outcome"),
    [
        ("", {"Authorization": f"Bearer {KEY}"}, ([], 1000)),
        ("", {"Authorization": f"bearer {KEY}"}, ([], 1000)),
        (f"?token={KEY}", None, ([], 1000)),
        # The token is not taken for a session setting; real settings still apply.
        (f"?token={KEY}&largeGap=2.0", None, ([], 1000)),
        (f"?token={KEY}&largeGap=never", None, (["INVALID_CONFIG"], 1008)),
        ("", None, (["UNAUTHORIZED"], 1008)),
        ("", {"Authorization": "Bearer wrong"}, (["UNAUTHORIZED"], 1008)),
        ("", {"Authorization": f"Basic {KEY}"}, (["UNAUTHORIZED"], 1008)),
        ("?token=wrong", None, (["UNAUTHORIZED"], 1008)),
        (f"?token={KEY}x", None, (["UNAUTHORIZED"], 1008)),
    ],
)
async def test_api_key(
    query: str, headers: dict[str, str] | None, outcome: tuple[list[str], int]
) -> None:
    with limited_server(api_key=KEY) as address:
        assert await session_outcome(address, query, headers) == outcome
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://{address}/health")).status_code == 200


async def test_without_a_key_any_client_may_connect() -> None:
    with limited_server() as address:
        assert await session_outcome(address) == ([], 1000)
        assert await session_outcome(address, "?token=anything") == ([], 1000)


@pytest.mark.parametrize(
    ("origin", "outcome"),
    [
        ("https://app.example.com", ([], 1000)),
        ("http://localhost:15751", ([], 1000)),
        (None, ([], 1000)),  # not a browser
        ("https://evil.example.net", (["ORIGIN_NOT_ALLOWED"], 1008)),
        ("https://app.example.com.evil.net", (["ORIGIN_NOT_ALLOWED"], 1008)),
    ],
)
async def test_allowed_origins(origin: str | None, outcome: tuple[list[str], int]) -> None:
    origins = ("https://app.example.com", "http://localhost:15751")
    with limited_server(allowed_origins=origins) as address:
        assert await session_outcome(address, origin=origin) == outcome


# --- drain --------------------------------------------------------------------------------------


async def test_drain_finishes_open_turns_closes_1001_and_refuses_new_sessions(
    speech: Recording,
) -> None:
    with limited_server() as address:
        async with websockets.connect(url(address)) as ws, httpx.AsyncClient() as client:
            await send_audio(ws, opening(speech))
            # The client is mid-utterance and keeps the connection open.
            drained = await client.post(f"http://{address}/_drain")
            messages, code, reason = await read_until_closed(ws)
            assert drained.json() is True
            health = await client.get(f"http://{address}/health")
        assert messages[-1] == HELLO_FINAL
        assert (code, reason) == (1001, "server shutting down")
        assert (health.status_code, health.json()) == (503, {"status": "draining"})
        assert await session_outcome(address) == (["SHUTTING_DOWN"], 1001)
