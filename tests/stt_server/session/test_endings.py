"""How a session ends: end of stream, idle timeout, maximum length (each finishes the open
turn first)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import websockets

from stt_server.audio import SAMPLE_RATE
from tests.stt_server.limited import (
    END,
    HELLO_FINAL,
    ScriptedEngine,
    limited_server,
    opening,
    read_until_closed,
    send_audio,
    url,
)
from tests.stt_server.speech import Recording, make_recording

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
