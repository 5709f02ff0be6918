"""An in-process server with the fixed-cost engine whose event loop the tests can inspect."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from stt_server.app import create_app
from stt_server.engines.base import Engine
from stt_server.engines.fixed_cost import FixedCostEngine
from stt_server.settings import ServerSettings, SessionSettings
from tests.conftest import free_port

T = TypeVar("T")


def rss_bytes() -> int:
    """Resident memory of this process (the server runs in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def settled_rss() -> int:
    """RSS once garbage is collected and the C heap has given its free pages back.

    Without the trim, glibc keeps freed memory of busy threads' arenas mapped: after 100
    sessions RSS stayed ~90 MiB above idle, yet went back to idle +3% on `malloc_trim`, and
    three rounds in a row did not grow it further. The trim makes this a test of what the
    server holds, not of the allocator's caching.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_bytes()


def settings(**overrides: Any) -> ServerSettings:
    """Server settings for load tests; limits the server does not have (yet) are left out."""
    known = set(ServerSettings.model_fields)
    wanted = {"max_sessions": 10_000, **overrides}
    return ServerSettings(
        engine="fixed-cost",
        device="cpu",
        max_batch_size=32,
        session=SessionSettings(),
        **{k: v for k, v in wanted.items() if k in known},
    )


class LiveServer:
    """uvicorn in a thread with an event loop of its own, and a view into that loop."""

    def __init__(self, engine: Engine, server_settings: ServerSettings) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"ws://{self.address}/ws/transcribe"
        app = create_app(server_settings, engine=engine)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            ws_max_size=16 << 20,
            ws_ping_interval=None,  # as stt-server does while its idle timeout is on (cli.py)
        )
        self._server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"server:{self.port}", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._server.serve())

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("load-test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self.loop.close()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` in the server's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def tasks(self) -> set[asyncio.Task[Any]]:
        async def all_tasks() -> set[asyncio.Task[Any]]:
            current = asyncio.current_task()
            return {t for t in asyncio.all_tasks() if t is not current}

        return self.call(all_tasks())

    def healthy(self) -> bool:
        try:
            return httpx.get(f"http://{self.address}/health", timeout=10).status_code == 200
        except httpx.TransportError:
            return False

    def wait_for_tasks(self, allowed: set[asyncio.Task[Any]], seconds: float = 20) -> set[str]:
        """Wait until every task in the server loop is one of `allowed`; names of the others."""
        deadline = time.monotonic() + seconds
        while True:
            extra = self.tasks() - allowed
            if not extra or time.monotonic() > deadline:
                return {t.get_name() + ":" + repr(t.get_coro()) for t in extra}
            time.sleep(0.1)


@contextlib.contextmanager
def live_server(engine: Engine | None = None, **overrides: Any) -> Iterator[LiveServer]:
    server = LiveServer(engine or FixedCostEngine("20ms"), settings(**overrides))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server() as live:
        yield live
