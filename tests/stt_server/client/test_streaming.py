"""The client session's end of stream against servers that do and do not know `end`
(small stand-in servers on loopback, so the server's side of the exchange is explicit)."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
from websockets.asyncio.server import ServerConnection, serve

from stt_server.audio import Audio
from stt_server.client.display import JsonDisplay
from stt_server.client.streaming import run_session

FINAL = {"text": "hi", "isFinal": True, "isEndOfTurn": True}


async def frames(count: int = 5) -> AsyncIterator[Audio]:
    for _ in range(count):
        yield np.zeros(320, np.float32)


async def run_against(
    handler: Callable[[ServerConnection], Awaitable[None]],
) -> tuple[list[str], list[tuple[str, str]], float]:
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        started = time.monotonic()
        result = await run_session(
            f"ws://127.0.0.1:{port}/ws/transcribe",
            frames(),
            JsonDisplay(io.StringIO()),
            settle_seconds=0.5,
            final_timeout=10,
        )
    return result.finals, result.errors, time.monotonic() - started


async def test_a_server_that_knows_end_is_waited_for_until_it_closes() -> None:
    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            if isinstance(message, str) and json.loads(message).get("type") == "end":
                await asyncio.sleep(1.0)  # finishing the last turn takes a while
                await ws.send(json.dumps(FINAL))
                await ws.close(1000)

    finals, errors, elapsed = await run_against(handler)
    assert (finals, errors) == (["hi"], [])
    assert elapsed >= 1.0


async def test_an_older_server_falls_back_to_the_quiet_period() -> None:
    async def handler(ws: ServerConnection) -> None:
        sent = False
        async for message in ws:
            if isinstance(message, str) and json.loads(message).get("type") == "end":
                error = {"error": "unsupported message type 'end'"}
                await ws.send(json.dumps({**error, "code": "UNSUPPORTED_MESSAGE_TYPE"}))
            elif not sent:
                await ws.send(json.dumps(FINAL))
                sent = True
        # It never closes by itself: the client closes after the quiet period.

    finals, errors, elapsed = await run_against(handler)
    assert finals == ["hi"]
    assert errors == []  # the refusal of `end` is not an error of the session
    assert 0.5 <= elapsed < 10
