"""FastAPI application: `GET /health`, WebSocket `/ws/transcribe`, and the optional web demo.

Run with `stt-server [flags]` or `python stt_server/server.py [flags]` (same flags).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # `python stt_server/server.py`: make the repository root importable instead of this folder.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import asyncio
import contextlib
import hmac
import itertools
import logging
import re
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from stt_server.config import ServerSettings
from stt_server.engines.base import Engine, load_engine
from stt_server.engines.batching import InferenceWorker
from stt_server.protocol import (
    CLOSE_TRY_AGAIN_LATER,
    ErrorCode,
    ErrorResponse,
    ProtocolError,
    close_code,
)
from stt_server.session import ClientChannel, InputEnd, TranscriptionSession
from stt_server.stages.vad import SileroModel

log = logging.getLogger("stt_server")

WEB_DIR = Path(__file__).resolve().parent / "web"
# Query parameters that are not session settings.
_ACCESS_PARAMS = frozenset({"token"})


@dataclass
class Runtime:
    """What is loaded once per process and shared by every session."""

    engine: Engine
    worker: InferenceWorker
    vad: SileroModel


class Sessions:
    """The open sessions: admission against the limit, and the drain on shutdown."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.draining = False
        self._open: set[TranscriptionSession] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._open)

    def refusal(self) -> ProtocolError | None:
        """Why a new session cannot start now, if it cannot."""
        if self.draining:
            return ProtocolError(ErrorCode.SHUTTING_DOWN, "the server is shutting down")
        if len(self._open) >= self.limit:
            return ProtocolError(
                ErrorCode.TOO_MANY_SESSIONS, f"the server is at its limit of {self.limit} sessions"
            )
        return None

    @contextlib.contextmanager
    def hold(self, session: TranscriptionSession) -> Iterator[None]:
        self._open.add(session)
        self._idle.clear()
        try:
            yield
        finally:
            self._open.discard(session)
            if not self._open:
                self._idle.set()

    async def drain(self, seconds: float) -> bool:
        """Refuse new sessions and have every open one finish its input and close (1001);
        True when all closed within `seconds`."""
        self.draining = True
        for session in list(self._open):
            session.stop(InputEnd.SHUTDOWN)
        try:
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


def authorized(api_key: str | None, authorization: str | None, token: str | None) -> bool:
    """Whether the request carries the key, as `Authorization: Bearer KEY` or `?token=KEY`;
    compared in constant time so response timing does not reveal how much of a guess matched."""
    if api_key is None:
        return True
    expected = api_key.encode()
    offered: list[str] = []
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer":
            offered.append(credentials.strip())
    if token is not None:
        offered.append(token)
    return any(hmac.compare_digest(expected, key.encode()) for key in offered)


def create_app(
    settings: ServerSettings,
    *,
    engine: Engine | None = None,
    engine_factory: Callable[[], Engine] | None = None,
    web_dir: Path = WEB_DIR,
    sessions: Sessions | None = None,
) -> FastAPI:
    """The application; models load in the lifespan (before uvicorn accepts connections)
    unless an already loaded `engine` is passed. `sessions` is given by whoever drains them."""

    runtime: Runtime | None = None
    session_ids = itertools.count(1)
    open_sessions = sessions if sessions is not None else Sessions(settings.max_sessions)

    def load() -> Runtime:
        loaded = engine
        if loaded is None:
            factory = engine_factory or (
                lambda: load_engine(settings.engine, settings.model, settings.device)
            )
            loaded = factory()
        worker = InferenceWorker(
            loaded, max_batch_size=settings.max_batch_size, max_wait_ms=settings.batch_wait_ms
        )
        return Runtime(engine=loaded, worker=worker, vad=SileroModel())

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[None]:
        nonlocal runtime
        loaded = await asyncio.to_thread(load)
        loaded.worker.start()
        runtime = loaded
        application.state.runtime = loaded
        log.info(
            "ready: engine=%s model=%s device=%s",
            loaded.engine.name,
            loaded.engine.model,
            loaded.engine.device,
        )
        try:
            yield
        finally:
            runtime = None
            await asyncio.to_thread(loaded.worker.stop, 10.0)

    app = FastAPI(title="stt-server", lifespan=lifespan)

    @app.get("/health")
    async def health() -> Response:
        if runtime is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        if open_sessions.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse(
            {
                "status": "healthy",
                "engine": runtime.engine.name,
                "model": runtime.engine.model,
                "device": runtime.engine.device,
                "sessions": len(open_sessions),
            }
        )

    @app.get("/", response_model=None)
    async def index() -> Response:
        page = web_dir / "index.html"
        if not page.is_file():
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return FileResponse(page)

    if web_dir.is_dir():
        app.mount("/static", StaticFiles(directory=web_dir), name="static")

    def access_error(websocket: WebSocket) -> ProtocolError | None:
        origin = websocket.headers.get("origin")
        # Browsers always send Origin (and scripts cannot change it); other clients need not
        # send one and could claim any, so the list only guards against foreign web pages.
        if (
            settings.allowed_origins
            and origin is not None
            and origin not in settings.allowed_origins
        ):
            return ProtocolError(ErrorCode.ORIGIN_NOT_ALLOWED, f"origin {origin!r} is not allowed")
        if not authorized(
            settings.api_key,
            websocket.headers.get("authorization"),
            websocket.query_params.get("token"),
        ):
            return ProtocolError(ErrorCode.UNAUTHORIZED, "missing or wrong API key")
        return None

    @app.websocket("/ws/transcribe")
    async def transcribe(websocket: WebSocket) -> None:
        # Accept first, then refuse with an ErrorResponse: a browser cannot see why a handshake
        # failed (only 1006), but it can read a message and a close code.
        await websocket.accept()
        channel = ClientChannel(websocket, settings.send_timeout)
        current = runtime
        if current is None:
            await channel.send(
                ErrorResponse(error="the server is still loading", code=ErrorCode.INTERNAL_ERROR)
            )
            await channel.close(CLOSE_TRY_AGAIN_LATER, "loading")
            return
        query = {k: v for k, v in websocket.query_params.items() if k not in _ACCESS_PARAMS}
        try:
            refusal = access_error(websocket) or open_sessions.refusal()
            if refusal is not None:
                raise refusal
            session_settings = settings.session.with_overrides(query)
        except ProtocolError as exc:
            await channel.send(exc.response())
            await channel.close(close_code(exc.code), exc.message)
            return
        session = TranscriptionSession(
            websocket,
            session_settings,
            session_id=f"s{next(session_ids)}",
            vad_model=current.vad,
            transcribe=current.worker.transcribe,
            max_message_bytes=settings.max_message_bytes,
            queue_size=settings.queue_size,
            idle_timeout=settings.idle_timeout,
            max_seconds=settings.max_session_seconds,
            send_timeout=settings.send_timeout,
        )
        with open_sessions.hold(session):
            await session.run()

    return app


_TOKEN = re.compile(r"([?&]token=)[^&\s\"]*")


class RedactTokens(logging.Filter):
    """Hides `?token=KEY` in log lines: uvicorn logs each request's path with its query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN.sub(r"\1***", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _TOKEN.sub(r"\1***", record.msg)
        return True


def redact_tokens_in_logs() -> None:
    """Call after uvicorn has configured its loggers (it does so in `uvicorn.Config`)."""
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(RedactTokens())


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


if __name__ == "__main__":
    from stt_server.cli import main

    sys.exit(main())
