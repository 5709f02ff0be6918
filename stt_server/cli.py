"""`stt-server` command line: flags (with `STT_*` environment defaults) → load model → serve."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from stt_server.config import SESSION_FLAGS, ServerSettings, SessionSettings, env_name
from stt_server.engines.base import ENGINES, EngineLoadError, load_engine


def _env(name: str, fallback: str) -> str:
    return os.environ.get(name, fallback)


def build_parser() -> argparse.ArgumentParser:
    d = ServerSettings()
    p = argparse.ArgumentParser(
        prog="stt-server",
        description="Real-time speech-to-text WebSocket server. Every flag also reads an "
        "environment variable (shown in brackets).",
    )
    p.add_argument("--host", default=_env("STT_HOST", d.host), help="[STT_HOST]")
    p.add_argument(
        "--port", type=int, default=int(_env("STT_PORT", str(d.port))), help="[STT_PORT]"
    )
    p.add_argument(
        "--engine", choices=ENGINES, default=_env("STT_ENGINE", d.engine), help="[STT_ENGINE]"
    )
    p.add_argument(
        "--model",
        default=os.environ.get("STT_MODEL"),
        help="checkpoint directory or hub id (canary-qwen default: nvidia/canary-qwen-2.5b; "
        "whisper: a CTranslate2 model directory) [STT_MODEL]",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cuda", "cpu"),
        default=_env("STT_DEVICE", "auto"),
        help="auto = cuda when available [STT_DEVICE]",
    )
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=int(_env("STT_MAX_BATCH_SIZE", str(d.max_batch_size))),
        help="chunks from all sessions per inference batch [STT_MAX_BATCH_SIZE]",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=float(_env("STT_BATCH_WAIT_MS", str(d.batch_wait_ms))),
        help="how long the worker waits to fill a batch [STT_BATCH_WAIT_MS]",
    )
    p.add_argument(
        "--max-message-bytes",
        type=int,
        default=int(_env("STT_MAX_MESSAGE_BYTES", str(d.max_message_bytes))),
        help="larger client messages get MESSAGE_TOO_LARGE [STT_MAX_MESSAGE_BYTES]",
    )
    p.add_argument(
        "--queue-size",
        type=int,
        default=int(_env("STT_QUEUE_SIZE", str(d.queue_size))),
        help="bound of each stage's input queue [STT_QUEUE_SIZE]",
    )
    p.add_argument(
        "--log-level", default=_env("STT_LOG_LEVEL", d.log_level), help="[STT_LOG_LEVEL]"
    )
    limits = p.add_argument_group("limits (a duration of 0 disables that limit)")
    limits.add_argument(
        "--max-sessions",
        type=int,
        default=int(_env("STT_MAX_SESSIONS", str(d.max_sessions))),
        help="more concurrent sessions get TOO_MANY_SESSIONS, close 1013 [STT_MAX_SESSIONS]",
    )
    for name, flag, what in (
        ("idle_timeout", "--idle-timeout", "seconds without a client message [STT_IDLE_TIMEOUT]"),
        (
            "max_session_seconds",
            "--max-session-seconds",
            "longest session, in seconds [STT_MAX_SESSION_SECONDS]",
        ),
        (
            "send_timeout",
            "--send-timeout",
            "seconds a send to a client that does not read may take [STT_SEND_TIMEOUT]",
        ),
        (
            "drain_timeout",
            "--drain-timeout",
            "seconds open sessions get to finish on SIGTERM/SIGINT [STT_DRAIN_TIMEOUT]",
        ),
    ):
        limits.add_argument(
            flag, type=float, default=float(_env(env_name(name), str(getattr(d, name)))), help=what
        )
    access = p.add_argument_group("access")
    access.add_argument(
        "--api-key",
        default=os.environ.get("STT_API_KEY") or None,
        help="require this key on /ws/transcribe (Authorization: Bearer KEY, or ?token=KEY); "
        "prefer the environment variable, command lines are visible to other users [STT_API_KEY]",
    )
    access.add_argument(
        "--allowed-origins",
        default=_env("STT_ALLOWED_ORIGINS", ""),
        help="comma-separated Origins browsers may connect from, e.g. https://app.example.com; "
        "empty: any [STT_ALLOWED_ORIGINS]",
    )
    session = p.add_argument_group(
        "per-session defaults (clients may override them with camelCase query parameters)"
    )
    defaults = SessionSettings()
    for name, flag in SESSION_FLAGS.items():
        info = SessionSettings.model_fields[name]
        session.add_argument(
            f"--{flag}",
            dest=name,
            type=float,
            default=float(_env(env_name(name), str(getattr(defaults, name)))),
            help=f"query ?{info.alias} [{env_name(name)}]",
        )
    return p


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def parse_settings(argv: Sequence[str] | None = None) -> ServerSettings:
    """Flags and environment → validated settings; exits with a message on bad values."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        session = SessionSettings(**{name: getattr(args, name) for name in SESSION_FLAGS})
    except ValidationError as exc:
        parser.error(f"invalid session defaults: {exc}")
    if args.max_sessions < 1:
        parser.error("--max-sessions must be at least 1")
    for name in ("idle_timeout", "max_session_seconds", "send_timeout", "drain_timeout"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0 (0 disables it)")
    return ServerSettings(
        host=args.host,
        port=args.port,
        engine=args.engine,
        model=args.model,
        device=resolve_device(args.device),
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        max_message_bytes=args.max_message_bytes,
        queue_size=args.queue_size,
        log_level=args.log_level,
        max_sessions=args.max_sessions,
        idle_timeout=args.idle_timeout,
        max_session_seconds=args.max_session_seconds,
        send_timeout=args.send_timeout,
        drain_timeout=args.drain_timeout,
        api_key=args.api_key,
        allowed_origins=tuple(o.strip() for o in args.allowed_origins.split(",") if o.strip()),
        session=session,
    )


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
        engine = load_engine(settings.engine, settings.model, settings.device)
    except EngineLoadError as exc:
        print(f"stt-server: cannot start: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from stt_server.server import Sessions, create_app, redact_tokens_in_logs, serve

    sessions = Sessions(settings.max_sessions)
    app = create_app(settings, engine=engine, sessions=sessions)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # Above our own limit, so oversized messages get MESSAGE_TOO_LARGE, not a dropped socket.
        ws_max_size=max(16 << 20, 4 * settings.max_message_bytes),
        # After the drain: what is still running gets this long before it is cancelled.
        timeout_graceful_shutdown=5,
        # Compressing raw PCM saves almost nothing and costs CPU on every frame (profiled).
        ws_per_message_deflate=False,
    )
    redact_tokens_in_logs()
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


if __name__ == "__main__":
    sys.exit(main())
