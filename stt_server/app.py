"""The FastAPI application: health and readiness, metrics, the demo page, and the streaming
endpoints, each a dialect over the same session pipeline."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stt_server import metrics
from stt_server.access import TOKEN_SUBPROTOCOL, access_error, authorized, offered_keys
from stt_server.admission import Sessions
from stt_server.api.openai_rest import openai_router
from stt_server.dialects import deepgram
from stt_server.dialects.native import NativeDialect
from stt_server.dialects.openai_realtime import error_event, open_realtime
from stt_server.engines import Engine
from stt_server.errors import ErrorCode, ProtocolError, close_code
from stt_server.protocol import ErrorResponse
from stt_server.runtime import Runtime
from stt_server.session.channel import ClientChannel
from stt_server.session.dialect import Dialect
from stt_server.session.session import Session
from stt_server.settings import ServerSettings, SessionSettings

log = logging.getLogger("stt_server")

WEB_DIR = Path(__file__).resolve().parent / "web"
# Query parameters that are not session settings.
ACCESS_PARAMS = frozenset({"token"})

# An endpoint's dialect from the query (minus access parameters) and the server's defaults;
# `ProtocolError` refuses the session.
OpenDialect = Callable[[Mapping[str, str], SessionSettings], tuple[SessionSettings, Dialect]]
FormatError = Callable[[ErrorResponse], str]
# A refused handshake as an HTTP response (see `Server.stream`).
Refuse = Callable[[ErrorResponse], Response]
# The ASGI extension that lets a WebSocket endpoint answer the handshake with an HTTP response.
DENIAL_EXTENSION = "websocket.http.response"


@dataclass
class Server:
    """The state the endpoints share: settings, the runtime once loaded, the open sessions."""

    settings: ServerSettings
    sessions: Sessions
    runtime: Runtime | None = None
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def stream(
        self,
        websocket: WebSocket,
        open_dialect: OpenDialect,
        format_error: FormatError,
        refuse: Refuse | None = None,
    ) -> None:
        """Accept a WebSocket and run one session on it, or refuse it with an error message.

        Accept first, then refuse: a browser cannot see why a handshake failed (only 1006), but
        it can read a message and a close code. With `refuse`, a refusal is that HTTP response
        instead (where the ASGI server can send one), for SDKs that retry a session that closes
        but give up on a 4xx at the handshake.
        """
        headers = websocket.headers
        query = {k: v for k, v in websocket.query_params.items() if k not in ACCESS_PARAMS}
        runtime = self.runtime
        try:
            if runtime is None or runtime.batcher is None:
                raise ProtocolError(ErrorCode.SHUTTING_DOWN, "the server is not serving")
            refusal = (
                access_error(
                    self.settings.api_key,
                    self.settings.allowed_origins,
                    headers,
                    websocket.query_params,
                )
                or self.sessions.refusal()
            )
            if refusal is not None:
                raise refusal
            session_settings, dialect = open_dialect(query, self.settings.session)
        except ProtocolError as exc:
            metrics.SESSIONS_REFUSED.labels(exc.code.value).inc()
            response = ErrorResponse(error=exc.message, code=exc.code)
            if refuse is not None and DENIAL_EXTENSION in websocket.scope.get("extensions", {}):
                await websocket.send_denial_response(refuse(response))
                return
            await self._accept(websocket)
            channel = ClientChannel(websocket, self.settings.send_timeout)
            await channel.send(format_error(response))
            await channel.close(close_code(exc.code), exc.message)
            return
        await self._accept(websocket)
        channel = ClientChannel(websocket, self.settings.send_timeout)
        session = Session(
            websocket,
            channel,
            dialect,
            session_settings,
            self.settings,
            session_id=f"s{next(self.ids)}",
            batcher=runtime.batcher,
            inference=runtime.pool,
        )
        with self.sessions.hold(session):
            await session.run()

    @staticmethod
    async def _accept(websocket: WebSocket) -> None:
        offered = [
            p.strip().lower()
            for p in websocket.headers.get("sec-websocket-protocol", "").split(",")
        ]
        await websocket.accept(
            subprotocol=TOKEN_SUBPROTOCOL if TOKEN_SUBPROTOCOL in offered else None
        )


def open_native(
    query: Mapping[str, str], defaults: SessionSettings
) -> tuple[SessionSettings, Dialect]:
    settings = defaults.with_overrides(query)
    return settings, NativeDialect(settings)


def create_app(
    settings: ServerSettings,
    *,
    engine: Engine | None = None,
    engines: list[Engine] | None = None,
    engine_factory: Callable[[], Engine] | None = None,
    web_dir: Path = WEB_DIR,
    sessions: Sessions | None = None,
) -> FastAPI:
    """The application; models load in the lifespan (before uvicorn accepts connections)
    unless already loaded `engine`s are passed. `sessions` is given by whoever drains them."""
    server = Server(
        settings,
        sessions
        if sessions is not None
        else Sessions(settings.max_sessions, max_backlog=settings.max_backlog),
    )

    def load() -> Runtime:
        loaded = engines or ([engine] if engine is not None else None)
        if loaded is None and engine_factory is not None:
            loaded = [engine_factory()]
        return Runtime.load(settings, loaded)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime = await asyncio.to_thread(load)
        runtime.start()
        server.runtime = runtime
        server.sessions.backlog = runtime.pool.backlog_seconds
        server.sessions.busy = runtime.pool.busy_seconds
        log.info(
            "ready: engine=%s model=%s device=%s",
            runtime.engine.name,
            runtime.engine.model,
            ",".join(e.device for e in runtime.engines),
        )
        try:
            yield
        finally:
            server.runtime = None
            await runtime.stop()

    app = FastAPI(title="stt-server", lifespan=lifespan)
    app.state.server = server

    @app.get("/health")
    async def health() -> Response:
        """Liveness: the process is up and what it serves (503 while loading or draining)."""
        runtime = server.runtime
        if runtime is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        if server.sessions.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        body = {"status": "healthy", **runtime.describe(), "sessions": len(server.sessions)}
        return JSONResponse(body)

    @app.get("/ready")
    async def ready() -> Response:
        """Readiness, for load balancers: 200 when a new session would be admitted now."""
        status = "loading" if server.runtime is None else server.sessions.readiness()
        return JSONResponse({"status": status}, status_code=200 if status == "ready" else 503)

    @app.get("/metrics")
    async def metrics_endpoint(request: Request) -> Response:
        """Prometheus text format; behind the API key only with --metrics-need-key."""
        if settings.metrics_need_key and not authorized(
            settings.api_key, offered_keys(request.headers, request.query_params)
        ):
            return JSONResponse({"detail": "missing or wrong API key"}, status_code=401)
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

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
        await server.stream(websocket, open_native, lambda r: r.to_json())

    @app.websocket("/v1/listen")
    async def listen(websocket: WebSocket) -> None:
        await server.stream(
            websocket, deepgram.open_deepgram, deepgram.render_error, deepgram.refusal
        )

    @app.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket) -> None:
        await server.stream(websocket, open_realtime, error_event)

    app.include_router(openai_router(server))
    return app
