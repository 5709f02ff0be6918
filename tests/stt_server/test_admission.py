"""Who may start a session: the session limit, the engines' load, and the drain on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import cast

import httpx
import pytest
import websockets

from stt_server.admission import MIN_HISTORY, RATE_WINDOW, Sessions
from stt_server.app import create_app
from stt_server.errors import ErrorCode
from stt_server.session.session import Session
from stt_server.settings import ServerSettings, SessionSettings
from tests.conftest import serve
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
from tests.stt_server.speech import Recording, make_recording
from tests.stt_server.test_server import wait_until
from tests.stt_server.wsclient import StreamResult, stream_audio

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


# --- the engines' load -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def opened(sessions: Sessions, stack: contextlib.ExitStack) -> None:
    stack.enter_context(sessions.hold(cast(Session, object())))


def test_one_more_session_is_refused_when_it_would_take_the_engines_past_the_ceiling() -> None:
    clock = Clock()
    sessions = Sessions(100, max_backlog=4.0, clock=clock)
    busy = 0.0
    sessions.busy = lambda window: busy
    with contextlib.ExitStack() as stack:
        assert sessions.load_with_one_more() is None  # no session open
        opened(sessions, stack)
        opened(sessions, stack)
        clock.now += MIN_HISTORY / 2 - 0.1
        busy = 5.0  # a burst, but on under MIN_HISTORY session-seconds: no verdict yet
        assert sessions.load_with_one_more() is None
        assert sessions.readiness() == "ready"

        clock.now += RATE_WINDOW  # both open all the window: 2 x 15 session-seconds
        busy = 0.3 * RATE_WINDOW * 2  # each took 30% of the engine
        assert sessions.load_with_one_more() == pytest.approx(0.9)
        assert sessions.refusal() is None  # at the ceiling, not past it

        busy = 0.35 * RATE_WINDOW * 2
        assert sessions.load_with_one_more() == pytest.approx(1.05)
        refusal = sessions.refusal()
        assert refusal is not None
        assert refusal.code is ErrorCode.TOO_MANY_SESSIONS
        assert "105% busy" in refusal.message
        assert sessions.readiness() == "busy"

        # --max-backlog 0 turns the rule off with the backlog's.
        sessions.max_backlog = 0.0
        assert sessions.refusal() is None
        assert sessions.readiness() == "ready"


def test_the_rate_is_per_session_second_counting_young_and_closed_sessions() -> None:
    clock = Clock()
    sessions = Sessions(100, max_backlog=4.0, clock=clock)
    sessions.busy = lambda window: 6.0
    with contextlib.ExitStack() as stack:
        with sessions.hold(cast(Session, object())):
            clock.now += 5.0
        opened(sessions, stack)
        clock.now += 10.0
        opened(sessions, stack)
        clock.now += 2.0
        # In the last 15 s: the closed one's last 3 s, 12 s of one open and 2 s of the young
        # one; 6 engine seconds over those 17 session-seconds, for the two open and one more.
        assert sessions.load_with_one_more() == pytest.approx(3 * 6.0 / 17.0)
        clock.now += RATE_WINDOW  # the closed one left the window
        assert sessions.load_with_one_more() == pytest.approx(3 * 6.0 / (2 * RATE_WINDOW))


def test_the_backlog_refuses_before_the_rate_is_known() -> None:
    sessions = Sessions(100, max_backlog=2.0)
    sessions.backlog = lambda: 2.5
    refusal = sessions.refusal()
    assert refusal is not None
    assert refusal.code is ErrorCode.TOO_MANY_SESSIONS
    assert sessions.readiness() == "busy"
    sessions.max_backlog = 0.0
    assert sessions.refusal() is None


# Each turn: 1.35 s of speech and 1.05 s of pause, one decode of 1 s: a session keeps the engine
# about 42% busy, so two fit under the ceiling (84%) and a third would not (125%).
TURNS = 10
ARRIVALS = (0.0, 8.0, 16.0, 18.0, 20.0)  # seconds; the later three find two sessions open
# When a final may come, after its turn's speech ended: the turn's gap (0.8 s), the decode (1 s)
# and --max-backlog (2 s) of queueing, plus slack for a loaded test machine.
MAX_BACKLOG = 2.0
LATE = 0.8 + 1.0 + MAX_BACKLOG + 2.0


@pytest.mark.slow
def test_at_twice_the_capacity_admitted_sessions_keep_their_finals_on_time() -> None:
    """Five real-time sessions offered to an engine that serves two: the admitted ones get
    every final on time, the others are refused (TOO_MANY_SESSIONS, 1013) before any
    transcript, and none is cut off half-served."""
    speech = make_recording(("Bring three red bags.",) * TURNS, (1.05,) * TURNS)
    settings = ServerSettings(
        engine="fixed-cost",
        model="1000ms",
        max_batch_size=1,
        max_backlog=MAX_BACKLOG,
        session=SessionSettings(interim_interval=0.0, overlap=0.0, speculate=False, large_gap=0.8),
    )
    with serve(create_app(settings)) as address:
        url = f"ws://{address}/ws/transcribe"

        async def session(at: float, start: float) -> tuple[StreamResult, str | None]:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            result = await stream_audio(
                url, speech.audio, realtime=True, binary=True, expected_finals=TURNS
            )
            if result.errors:  # refused: what /ready says right after
                async with httpx.AsyncClient() as client:
                    return result, (await client.get(f"http://{address}/ready")).json()["status"]
            return result, None

        async def offered() -> list[tuple[StreamResult, str | None]]:
            start = time.monotonic()
            return await asyncio.gather(*(session(at, start) for at in ARRIVALS))

        outcomes = asyncio.run(offered())

    admitted = [result for result, _ in outcomes if not result.errors]
    refused = [(result, ready) for result, ready in outcomes if result.errors]
    assert admitted, [r.received for r, _ in outcomes]
    assert refused, [r.received for r, _ in outcomes]
    for result in admitted:
        assert len(result.finals) == TURNS, result.received
        late = [
            round(final.at - end, 2)
            for final, (_, end) in zip(result.finals, speech.spans, strict=True)
            if final.at - end > LATE
        ]
        assert not late, late
    for result, ready in refused:
        assert [r.message.get("code") for r in result.received] == ["TOO_MANY_SESSIONS"]
        assert result.close_code == 1013
        assert ready == "busy"


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
