"""`stt-server`: flags and `STT_*` variables (both generated from the settings' fields) → load the
models → serve until a signal, then drain."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence

import uvicorn
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from starlette.types import ASGIApp

from stt_server.admission import Sessions
from stt_server.app import create_app
from stt_server.engines import EngineLoadError
from stt_server.logs import redact_tokens_in_logs
from stt_server.runtime import load_engines
from stt_server.serve import serve
from stt_server.settings import ServerSettings, SessionSettings, describe

ENV_PREFIX = "STT_"
# The binary-frame format is the client's to say, per connection; it has no server default.
_CLIENT_ONLY = frozenset({"sample_rate", "channels"})


def _fields() -> Iterator[tuple[str | None, str, FieldInfo]]:
    """(group, name, field) of every setting: the server's, then the session defaults."""
    for name, info in ServerSettings.model_fields.items():
        if name != "session":
            yield None, name, info
    for name, info in SessionSettings.model_fields.items():
        if name not in _CLIENT_ONLY:
            yield "session", name, info


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _is_bool(info: FieldInfo) -> bool:
    return info.annotation is bool


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stt-server",
        description="Real-time speech-to-text server. Every flag also reads an environment "
        "variable (in brackets); flags win.",
    )
    session = parser.add_argument_group(
        "per-session defaults (clients may override them with camelCase query parameters)"
    )
    for group, name, info in _fields():
        target = session if group else parser
        choices = (
            typing.get_args(info.annotation)
            if typing.get_origin(info.annotation) is typing.Literal
            else None
        )
        default = info.get_default(call_default_factory=True)
        help_text = f"{info.description or ''} (default: {default}) [{env_name(name)}]".strip()
        if group:
            help_text += f" (query: {info.alias})"
        help_text = help_text.replace("%", "%%")  # argparse formats help with %-placeholders
        target.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            default=None,
            choices=choices,
            action=argparse.BooleanOptionalAction if _is_bool(info) else "store",
            help=help_text,
        )
    return parser


def parse_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> ServerSettings:
    """Flags, then `STT_*` variables, then the fields' defaults; exits with a message on bad
    values (every value is checked against its field's bounds)."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    session: dict[str, object] = {}
    for group, name, _ in _fields():
        value = args[name]
        if value is None:
            value = environ.get(env_name(name))
        if value is not None:
            (session if group else values)[name] = value
    try:
        return ServerSettings.model_validate({**values, "session": SessionSettings(**session)})  # pyright: ignore[reportArgumentType]
    except ValidationError as exc:
        parser.error(describe(exc))


def uvicorn_config(app: ASGIApp, settings: ServerSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Above our own limit, so oversized messages get MESSAGE_TOO_LARGE, not a dropped socket.
        ws_max_size=max(16 << 20, 4 * settings.max_message_bytes),
        # A client that streams faster than real time is read no faster than it is transcribed,
        # so the pong to a keepalive ping waits behind its own unread audio, and uvicorn closed
        # such live connections with 1011 after 20 s. The idle timeout already closes a peer
        # that went silent; pings are kept only where it is off.
        ws_ping_interval=None if settings.idle_timeout else 20.0,
        # After the drain: what is still running gets this long before it is cancelled.
        timeout_graceful_shutdown=5,
        # Compressing raw PCM saves almost nothing and costs CPU on every frame (profiled).
        ws_per_message_deflate=False,
    )


def freeze_startup_heap() -> None:
    """Move what start-up left (modules, the engines' Python objects: ~200,000 of them) out of
    the garbage collector's view. A full collection walks every tracked object with the GIL
    held; over that heap it took 110 ms, a stall of every session's event loop and inference
    thread, and at 100 streams it came a few times a minute. What is frozen lives for the
    process anyway; objects made later are collected as before."""
    gc.collect()
    gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("stt_server")
    log.info(
        "loading engine=%s model=%s device=%s", settings.engine, settings.model, settings.device
    )
    try:
        engines = load_engines(settings)
    except EngineLoadError as exc:
        print(f"stt-server: cannot start: {exc}", file=sys.stderr)
        return 2

    sessions = Sessions(settings.max_sessions, max_backlog=settings.max_backlog)
    app = create_app(settings, engines=engines, sessions=sessions)
    config = uvicorn_config(app, settings)
    redact_tokens_in_logs()
    freeze_startup_heap()
    # `serve` runs uvicorn inside our own loop, so uvicorn's loop choice does not apply: pick
    # uvloop ourselves where it is installed (uvicorn[standard]): 200 streams held the latency
    # bound with it, 150 without (BENCHMARKS.md).
    with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
        runner.run(serve(config, sessions, settings.drain_timeout))
    return 0


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
