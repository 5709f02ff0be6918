"""Who may start a session: the session limit, and the drain on shutdown."""

from __future__ import annotations

import httpx
import websockets

from tests.stt_server.limited import (
    END,
    HELLO_FINAL,
    limited_server,
    open_sessions,
    opening,
    read_until_closed,
    send_audio,
    session_outcome,
    url,
)
from tests.stt_server.speech import Recording
from tests.stt_server.test_server import wait_until

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
