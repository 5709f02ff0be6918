"""Running as a fleet: Prometheus metrics, readiness under load, several devices per process."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import websockets

from stt_server import runtime
from stt_server.app import create_app
from stt_server.settings import ServerSettings, SessionSettings
from tests.conftest import serve
from tests.stt_server.speech import Recording, make_recording
from tests.stt_server.test_server import wait_until
from tests.stt_server.wsclient import stream_audio


@pytest.fixture(scope="module")
def two_turns() -> Recording:
    return make_recording(
        ("The weather today is sunny.", "Please call Stella tomorrow."), (2.0, 2.0)
    )


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.compile(rf"^{re.escape(name)}(\{{([^}}]*)\}})? (\S+)$", re.MULTILINE)
    total = 0.0
    for match in pattern.finditer(text):
        if all(part in (match.group(2) or "") for part in wanted.split(",") if part):
            total += float(match.group(3))
    return total


@pytest.fixture(scope="module")
def two_devices() -> Iterator[str]:
    settings = ServerSettings(
        engine="fixed-cost",
        model="150ms",
        device="cpu:0,cpu:1",
        max_batch_size=1,
        session=SessionSettings(interim_interval=0.0),
    )
    with serve(create_app(settings)) as address:
        yield address


def test_two_devices_each_get_a_worker_and_share_the_chunks(
    two_devices: str, two_turns: Recording
) -> None:
    health = httpx.get(f"http://{two_devices}/health").json()
    assert [d["device"] for d in health["devices"]] == ["cpu:0", "cpu:1"]
    before = httpx.get(f"http://{two_devices}/metrics").text

    async def sessions() -> None:
        url = f"ws://{two_devices}/ws/transcribe"
        results = await asyncio.gather(
            *(stream_audio(url, two_turns.audio, expected_finals=2, binary=True) for _ in range(6))
        )
        for result in results:
            assert len(result.finals) == 2, result.received
            assert result.errors == []

    asyncio.run(sessions())
    after = httpx.get(f"http://{two_devices}/metrics").text
    served = {
        device: metric(after, "stt_inference_batches_total", device=device)
        - metric(before, "stt_inference_batches_total", device=device)
        for device in ("cpu:0", "cpu:1")
    }
    # Twelve turns' chunks at 150 ms each, one per batch: the least loaded worker takes each.
    assert sum(served.values()) >= 12
    assert min(served.values()) >= 3, served


def test_metrics_after_a_few_sessions(two_devices: str, two_turns: Recording) -> None:
    async def one() -> None:
        url = f"ws://{two_devices}/ws/transcribe"
        result = await stream_audio(url, two_turns.audio, expected_finals=2)
        assert len(result.finals) == 2

    before = httpx.get(f"http://{two_devices}/metrics").text
    asyncio.run(one())

    async def ended() -> bool:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://{two_devices}/metrics")).text
        return metric(text, "stt_sessions_open", endpoint="transcribe") == 0

    assert asyncio.run(wait_until(ended))
    response = httpx.get(f"http://{two_devices}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text

    def grew(name: str, **labels: str) -> float:
        return metric(text, name, **labels) - metric(before, name, **labels)

    assert grew("stt_sessions_started_total", endpoint="transcribe") == 1
    assert grew("stt_segments_sent_total", kind="final") == 2
    assert grew("stt_audio_received_seconds_total") == pytest.approx(
        two_turns.audio.size / 16000, abs=0.05
    )
    assert grew("stt_final_latency_seconds_count") == 2
    assert (
        grew("stt_engine_seconds_count", device="cpu:0")
        + grew("stt_engine_seconds_count", device="cpu:1")
        >= 2
    )
    assert grew("stt_vad_batch_rows_count") > 0
    assert 'stt_model_info{devices="cpu:0,cpu:1",engine="fixed-cost",model="150ms"} 1.0' in text
    assert "process_resident_memory_bytes" in text
    # Label sets stay bounded: no session ids, no client addresses.
    assert not re.search(r'session="|client="|s\d+"', text)


def test_metrics_can_require_the_key() -> None:
    settings = ServerSettings(engine="fixed-cost", api_key="k3y", metrics_need_key=True)
    with serve(create_app(settings)) as address:
        assert httpx.get(f"http://{address}/metrics").status_code == 401
        ok = httpx.get(f"http://{address}/metrics", headers={"Authorization": "Bearer k3y"})
        assert ok.status_code == 200
    open_settings = ServerSettings(engine="fixed-cost", api_key="k3y")
    with serve(create_app(open_settings)) as address:
        assert httpx.get(f"http://{address}/metrics").status_code == 200


def test_a_backlogged_server_is_not_ready_and_refuses_new_sessions(two_turns: Recording) -> None:
    """One client floods the engine (audio much faster than real time, 300 ms + 300 ms per
    audio second each chunk): past --max-backlog, /ready says busy and a new session is refused
    with TOO_MANY_SESSIONS (1013) before it is served at all; once the backlog is worked off,
    the server is ready again and the flood's every final arrived."""
    settings = ServerSettings(
        engine="fixed-cost",
        model="300ms+300ms/s",
        max_batch_size=1,
        max_backlog=1.0,
        session=SessionSettings(interim_interval=0.0, overlap=0.0),
    )
    flood = np.concatenate([two_turns.audio] * 4)
    with serve(create_app(settings)) as address:
        url = f"ws://{address}/ws/transcribe"
        assert httpx.get(f"http://{address}/ready").json() == {"status": "ready"}

        async def scenario() -> None:
            flooding = asyncio.create_task(stream_audio(url, flood, binary=True, expected_finals=8))

            async def readiness() -> httpx.Response:
                async with httpx.AsyncClient() as client:
                    return await client.get(f"http://{address}/ready")

            async def busy() -> bool:
                return (await readiness()).status_code == 503

            assert await wait_until(busy, seconds=60)
            assert (await readiness()).json() == {"status": "busy"}
            async with websockets.connect(url) as refused:
                reply = await refused.recv()
                assert '"TOO_MANY_SESSIONS"' in str(reply)
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await refused.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1013
            result = await flooding
            assert len(result.finals) == 8
            assert result.errors == []

            async def ready() -> bool:
                return (await readiness()).status_code == 200

            assert await wait_until(ready, seconds=60)

        asyncio.run(scenario())


def test_auto_on_a_host_without_a_gpu_loads_one_whisper_engine_per_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "resolve_device", lambda d: "cpu" if d == "auto" else d)
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 16)
    assert runtime.devices("auto", "whisper") == ["cpu"] * runtime.MAX_CPU_ENGINES
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 2)
    assert runtime.devices("auto", "whisper") == ["cpu", "cpu"]
    # Other engines, and devices named on the command line, are taken as they are.
    assert runtime.devices("auto", "fixed-cost") == ["cpu"]
    assert runtime.devices("cpu", "whisper") == ["cpu"]
    assert runtime.devices("cpu, cpu", "whisper") == ["cpu", "cpu"]
    monkeypatch.setattr(runtime, "resolve_device", lambda d: "cuda" if d == "auto" else d)
    assert runtime.devices("auto", "whisper") == ["cuda"]
