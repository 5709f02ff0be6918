"""A real server on a loopback port with a scripted engine (what is transcribed does not matter
here, only when and whether) and real WebSockets: what the tests of limits, endings, access and
admission share."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import websockets

from stt_server.admission import Sessions
from stt_server.app import create_app
from stt_server.audio import SAMPLE_RATE, encode_pcm16
from stt_server.engines.base import Audio
from stt_server.settings import ServerSettings
from tests.conftest import serve
from tests.stt_server.speech import Recording
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
