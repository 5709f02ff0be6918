"""Serving until a signal, then draining: uvicorn inside our own loop, top to bottom."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from stt_server.admission import Sessions

log = logging.getLogger("stt_server")


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: `serve` drains sessions first, and the process
    exits with 0 instead of re-raising the signal once uvicorn is done."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(config: uvicorn.Config, sessions: Sessions, drain: float) -> None:
    """Run until SIGTERM or SIGINT, then drain: stop accepting sessions, let every open one
    finish its input and close with 1001 (at most `drain` seconds), then stop uvicorn.
    A second signal skips the rest of the drain."""
    server = _Server(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(server.serve(), name="uvicorn")
    stopping = asyncio.create_task(stop.wait(), name="signal")
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stopping.done():
            stop.clear()
            log.info("shutdown: draining %d session(s), at most %.0fs", len(sessions), drain)
            draining = asyncio.create_task(sessions.drain(drain), name="drain")
            again = asyncio.create_task(stop.wait(), name="signal")
            await asyncio.wait({draining, again}, return_when=asyncio.FIRST_COMPLETED)
            if not draining.done() or not draining.result():
                log.warning("shutdown: %d session(s) did not finish in time", len(sessions))
            for task in (draining, again):
                task.cancel()
            await asyncio.gather(draining, again, return_exceptions=True)
            server.should_exit = True
        await serving
    finally:
        stopping.cancel()
        await asyncio.gather(stopping, return_exceptions=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
