"""Load and faults: many sessions, clients that vanish or blast, an engine that fails.

The server runs in this process (a uvicorn thread with its own event loop, fixed-cost engine)
so its tasks and its memory can be inspected; the 100-session load comes from a separate
process. Nothing here asserts speed: only that every turn is transcribed, nothing is left
behind, memory stays bounded, and failures stay in their session.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest
import websockets

from stt_server.engines.base import Audio
from stt_server.engines.fixed_cost import FixedCostEngine
from tests.conftest import REPO
from tests.stt_server.load.conftest import LiveServer, live_server, settled_rss
from tests.stt_server.load.loadgen import ClientResult, end_frames, frames_of, run_client
from tests.stt_server.speech import SENTENCES, Recording, make_recording

MIB = 1 << 20

pytestmark = pytest.mark.slow


def turn_ends(recording: Recording) -> list[float]:
    return [
        end
        for (_, end), pause in zip(recording.spans, recording.pauses, strict=True)
        if pause >= 1.5
    ]


@pytest.fixture(scope="module")
def short() -> Recording:
    """Two sentences, one turn (about 8 s)."""
    return make_recording(SENTENCES[:2], (0.5, 2.0))


async def warm_up(server: LiveServer, recording: Recording) -> set[asyncio.Task[object]]:
    """One complete session, so lazily built things (ONNX arenas, batchers) count as idle;
    returns the server loop's tasks at rest, which the session did not add to."""
    idle_tasks = server.tasks()
    result = await run_client(
        server.url, frames_of(recording.audio), end_frames(turn_ends(recording)), realtime=False
    )
    assert result.ok, result
    assert server.wait_for_tasks(idle_tasks) == set()
    return idle_tasks


def test_100_sessions_of_30_s_each(server: LiveServer, short: Recording) -> None:
    idle_tasks = asyncio.run(warm_up(server, short))
    idle_rss = settled_rss()
    run = subprocess.run(
        [
            *(sys.executable, "-m", "tests.stt_server.load.loadgen", "--url", server.url),
            *("--clients", "100", "--seconds", "30", "--stagger", "3"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    results = [ClientResult(**r) for r in json.loads(run.stdout)["results"]]
    assert len(results) == 100
    failed = [r for r in results if not r.ok]
    assert failed == [], f"{len(failed)} sessions failed, e.g. {failed[:3]}"
    assert all(r.finals == 3 for r in results)  # the recording's three turns
    assert server.wait_for_tasks(idle_tasks) == set()
    assert server.healthy()
    after = settled_rss()
    assert after <= idle_rss * 1.10, f"RSS {idle_rss / MIB:.0f} → {after / MIB:.0f} MiB"


async def vanish(url: str, frames: list[bytes], upto: int) -> None:
    """Stream `upto` frames, then drop the connection with a TCP reset (no close frame)."""
    ws = await websockets.connect(url)
    for frame in frames[:upto]:
        await ws.send(frame)
    await asyncio.sleep(0.3)  # let the server take the audio in: the session is mid-utterance
    sock = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()
    await asyncio.wait_for(ws.wait_closed(), 10)


async def test_clients_that_vanish_mid_utterance(server: LiveServer, short: Recording) -> None:
    idle_tasks = await warm_up(server, short)
    idle_rss = settled_rss()
    frames = frames_of(short.audio)
    ends = end_frames(turn_ends(short))
    # 1.5 s into the first sentence: VAD is in speech, nothing final yet.
    upto = int((short.spans[0][0] + 1.5) / 0.02)
    steady = [
        asyncio.create_task(run_client(server.url, frames, ends, start_delay=0.1 * i))
        for i in range(10)
    ]
    for _wave in range(3):
        await asyncio.gather(*(vanish(server.url, frames, upto) for _ in range(10)))
    results = await asyncio.gather(*steady)
    assert [r for r in results if not r.ok] == []
    assert server.wait_for_tasks(idle_tasks) == set()
    assert server.healthy()
    after = settled_rss()
    assert after <= idle_rss * 1.10, f"RSS {idle_rss / MIB:.0f} → {after / MIB:.0f} MiB"


@pytest.fixture
def traced() -> Iterator[None]:
    """Python's and numpy's allocations traced while the test runs (tracemalloc)."""
    tracemalloc.start()
    yield
    tracemalloc.stop()


async def test_faster_than_real_time_is_held_back_and_memory_stays_bounded(
    server: LiveServer, recording: Recording, short: Recording, traced: None
) -> None:
    idle_tasks = await warm_up(server, short)
    repeats = 48  # 48 x 25 s: twenty minutes of audio, sent as fast as the socket takes it
    one = frames_of(recording.audio)
    ends = [i * len(one) + k for i in range(repeats) for k in end_frames(turn_ends(recording))]
    frames = one * repeats  # the same frame objects again: nothing new to allocate
    before, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    # No keepalive pings: a ping waits behind the client's own unread audio (the server reads
    # no faster than it transcribes), and tracemalloc slows the server enough for it to time out.
    result = await run_client(
        server.url, frames, ends, realtime=False, idle_timeout=120, ping_interval=None
    )
    _, peak = tracemalloc.get_traced_memory()
    assert result.ok, result.failure
    assert result.finals == 3 * repeats
    # Twenty minutes of audio is 37 MiB as PCM and 73 MiB as float32; a server that buffered
    # what it could not process yet would hold that much at its peak. A bounded one holds its
    # queues: 2.5 MiB, against 80.5 MiB with stage queues of 100,000 items. Live allocations
    # are counted, not RSS: the process's RSS inside the whole suite moved by up to 31 MiB
    # with the allocator's arenas and other tests' leftovers, and failed a 24 MiB bound.
    assert peak - before < 16 * MIB, f"peak {(peak - before) / MIB:.1f} MiB of live allocations"
    assert server.wait_for_tasks(idle_tasks) == set()


class FailsOnLoudAudio(FixedCostEngine):
    """Fixed cost; a batch holding loud audio (peak > 0.9) fails, as a model error would."""

    def transcribe(self, batch: list[Audio]) -> list[str]:
        if any(float(np.max(np.abs(a))) > 0.9 for a in batch):
            raise RuntimeError("simulated engine failure")
        return super().transcribe(batch)


async def test_engine_failure_under_load_stays_in_its_sessions(short: Recording) -> None:
    loud = make_recording(SENTENCES[:2], (0.5, 2.0), gain=0.95)
    with live_server(FailsOnLoudAudio("20ms")) as server:
        idle_tasks = await warm_up(server, short)
        ends = end_frames(turn_ends(short))
        quiet_frames, loud_frames = frames_of(short.audio), frames_of(loud.audio)
        runs = [
            run_client(
                server.url, loud_frames if i % 10 == 0 else quiet_frames, ends, start_delay=0.05 * i
            )
            for i in range(30)
        ]
        results = await asyncio.gather(*runs)
        for i, result in enumerate(results):
            if i % 10 == 0:
                assert result.errors == ["ENGINE_ERROR"], result
                assert result.finals == 0
            else:
                assert result.ok, (i, result)
        assert server.wait_for_tasks(idle_tasks) == set()
        assert server.healthy()
