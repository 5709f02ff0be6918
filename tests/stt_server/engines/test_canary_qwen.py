"""The default engine's path with a tiny random-weight checkpoint in the real layout.

The text is meaningless (random weights); what is tested is that the server loads the checkpoint
through nemo_lite, sends audio through it, and speaks the protocol.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from stt_server.engines.canary_qwen import CanaryQwenEngine
from tests.conftest import server_process
from tests.stt_server.speech import make_recording
from tests.stt_server.wsclient import stream_audio
from tests.support.tiny_canary import write_tiny_checkpoint

STT_SERVER = str(Path(sys.executable).with_name("stt-server"))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-canary"), seed=0)


def test_engine_transcribes_a_batch(tiny_checkpoint: Path) -> None:
    engine = CanaryQwenEngine(str(tiny_checkpoint), device="cpu")
    assert (engine.name, engine.device) == ("canary-qwen", "cpu")
    rng = np.random.default_rng(0)
    texts = engine.transcribe(
        [rng.normal(0, 0.1, 32000).astype(np.float32), np.zeros(8000, np.float32)]
    )
    assert len(texts) == 2
    assert all(isinstance(t, str) for t in texts)


def test_engine_decodes_step_by_step(tiny_checkpoint: Path) -> None:
    engine = CanaryQwenEngine(str(tiny_checkpoint), device="cpu")
    rng = np.random.default_rng(1)
    clips = [rng.normal(0, 0.1, n).astype(np.float32) for n in (24000, 4000, 9000)]
    engine.admit([(10, clips[0]), (11, clips[1])])
    assert engine.active == 2
    texts: dict[int, str] = dict(engine.step())
    engine.admit([(12, clips[2])])
    engine.abort(11)
    assert engine.active == 2
    while engine.active:
        texts.update(engine.step())
    assert set(texts) == {10, 12}
    assert [texts[10], texts[12]] == engine.transcribe([clips[0], clips[2]])
    assert engine.step() == []


async def test_server_streams_with_the_tiny_checkpoint(tiny_checkpoint: Path) -> None:
    speech = make_recording(("Open the window please.", "Then close the door."), (0.5, 2.0))
    command = [STT_SERVER, "--engine", "canary-qwen", "--model", str(tiny_checkpoint)]
    with server_process(*command) as address:
        async with httpx.AsyncClient() as client:
            health = (await client.get(f"http://{address}/health")).json()
        assert health == {
            "status": "healthy",
            "engine": "canary-qwen",
            "model": str(tiny_checkpoint),
            "device": "cpu",
            "devices": [{"device": "cpu", "queued": 0, "backlog_seconds": 0.0}],
            "sessions": 0,
        }
        result = await stream_audio(
            f"ws://{address}/ws/transcribe", speech.audio, expected_finals=1, idle_timeout=60
        )
    assert result.errors == []
    assert len(result.finals) == 1
    final = result.finals[0].message
    assert final["isEndOfTurn"] is True
    tentatives = [s for s in result.segments if not s["isFinal"]]
    assert tentatives, "no tentative segment before the final"
    assert tentatives[-1]["text"] == final["text"]
