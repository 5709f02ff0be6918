"""SIGTERM during a live session: the real `stt-server` process (whisper engine) drains the
session (its open turn gets a final), closes it with 1001 and exits with status 0. The server
also requires a key (`STT_API_KEY`), which the client sends as `?token=`: it must not be logged."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import websockets

from stt_server.audio import SAMPLE_RATE, encode_pcm16
from tests.conftest import REPO, _wait_healthy, free_port
from tests.stt_server.speech import Recording, make_recording, normalise, word_error_rate

STT_SERVER = str(Path(sys.executable).with_name("stt-server"))
FIRST = "Please call Stella and ask her to bring these things from the store."
SECOND = "The weather today is sunny with a light breeze from the west."
KEY = "process-test-key"


async def talk_until_closed(
    address: str, speech: Recording, cut: int, proc: subprocess.Popen[bytes]
) -> tuple[list[dict[str, Any]], int | None, float]:
    """Stream `speech` at real-time pace; at sample `cut` send SIGTERM to the server and keep
    talking. Returns the messages, the close code, and when SIGTERM was sent."""
    messages: list[dict[str, Any]] = []
    signalled = 0.0
    async with websockets.connect(f"ws://{address}/ws/transcribe?token={KEY}") as ws:

        async def talk() -> None:
            nonlocal signalled
            start = time.monotonic()
            for k, offset in enumerate(range(0, len(speech.audio), 320)):
                if offset >= cut and not signalled:
                    proc.send_signal(signal.SIGTERM)
                    signalled = time.monotonic()
                await ws.send(encode_pcm16(speech.audio[offset : offset + 320]))
                await asyncio.sleep(max(0.0, start + (k + 1) * 0.02 - time.monotonic()))

        talker = asyncio.create_task(talk())
        try:
            async with asyncio.timeout(60):
                async for raw in ws:
                    messages.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            talker.cancel()
            await asyncio.gather(talker, return_exceptions=True)
    return messages, ws.close_code, signalled


def test_sigterm_mid_utterance_drains_the_session_and_exits_0(
    whisper_model_dir: Path, tmp_path: Path
) -> None:
    speech = make_recording((FIRST, SECOND), (2.0, 0.5))
    cut = int((speech.spans[1][0] + 2.0) * SAMPLE_RATE)  # 2 of its 3.1 s
    address = f"127.0.0.1:{free_port()}"
    host, port = address.split(":")
    command = [STT_SERVER, "--engine", "whisper", "--model", str(whisper_model_dir)]
    command += ["--host", host, "--port", port, "--drain-timeout", "20", "--log-level", "info"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "STT_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}
    env["STT_API_KEY"] = KEY  # and the client sends it as ?token=, which must not be logged
    with (tmp_path / "server.log").open("w+") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(proc, address, 120, log)
            messages, code, signalled = asyncio.run(talk_until_closed(address, speech, cut, proc))
            returncode = proc.wait(30)
            exited = time.monotonic()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.seek(0)
        output = log.read()

    assert returncode == 0, output
    assert exited - signalled < 15, output
    assert code == 1001
    assert "draining 1 session(s)" in output
    assert "/ws/transcribe?token=***" in output
    assert KEY not in output
    finals = [m["text"] for m in messages if m.get("isFinal")]
    assert all("code" not in m for m in messages), messages
    assert len(finals) == 2, messages
    assert word_error_rate(FIRST, finals[0]) <= 0.3, finals
    # The second turn was cut by the shutdown 2 s in: its final has the words spoken so far
    # ("the weather today is sunny with a light"; whisper-base may hear "whatever"), not the
    # ones the client said after the drain began.
    words = normalise(finals[1]).split()
    assert "sunny" in words, finals
    assert "west" not in words, finals
    assert messages[-1]["isFinal"]
