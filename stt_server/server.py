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
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from stt_server.config import ServerSettings
from stt_server.engines.base import Engine, load_engine
from stt_server.engines.batching import InferenceWorker
from stt_server.protocol import ErrorCode, ErrorResponse, ProtocolError
from stt_server.session import (
    CLOSE_POLICY_VIOLATION,
    ClientChannel,
    TranscriptionSession,
)
from stt_server.stages.vad import SileroModel

log = logging.getLogger("stt_server")

WEB_DIR = Path(__file__).resolve().parent / "web"
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass
class Runtime:
    """What is loaded once per process and shared by every session."""

    engine: Engine
    worker: InferenceWorker
    vad: SileroModel


def create_app(
    settings: ServerSettings,
    *,
    engine: Engine | None = None,
    engine_factory: Callable[[], Engine] | None = None,
    web_dir: Path = WEB_DIR,
) -> FastAPI:
    """The application; models load in the lifespan (before uvicorn accepts connections)
    unless an already loaded `engine` is passed."""

    runtime: Runtime | None = None
    session_ids = itertools.count(1)

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
        return JSONResponse(
            {
                "status": "healthy",
                "engine": runtime.engine.name,
                "model": runtime.engine.model,
                "device": runtime.engine.device,
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

    @app.websocket("/ws/transcribe")
    async def transcribe(websocket: WebSocket) -> None:
        await websocket.accept()
        channel = ClientChannel(websocket)
        current = runtime
        if current is None:
            await channel.send(
                ErrorResponse(error="the server is still loading", code=ErrorCode.INTERNAL_ERROR)
            )
            await channel.close(CLOSE_TRY_AGAIN_LATER, "loading")
            return
        try:
            session_settings = settings.session.with_overrides(websocket.query_params)
        except ProtocolError as exc:
            await channel.send(exc.response())
            await channel.close(CLOSE_POLICY_VIOLATION, exc.message)
            return
        session = TranscriptionSession(
            websocket,
            session_settings,
            session_id=f"s{next(session_ids)}",
            vad_model=current.vad,
            transcribe=current.worker.transcribe,
            max_message_bytes=settings.max_message_bytes,
            queue_size=settings.queue_size,
        )
        await session.run()

    return app


if __name__ == "__main__":
    from stt_server.cli import main

    sys.exit(main())
