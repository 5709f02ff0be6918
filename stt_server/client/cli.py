"""`stt-client`: stream an audio file or the microphone to an stt-server and show the text.

stt-client recording.mp3                 # a file, paced at real time
stt-client recording.wav --speed 0       # as fast as the server accepts
stt-client                               # the microphone, until Ctrl-C
stt-client FILE --json                   # every server message as a JSON line
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from stt_server.audio import Audio
from stt_server.client.audio_file import AudioFileError, load_audio
from stt_server.client.display import Display, JsonDisplay, LineDisplay, LiveDisplay
from stt_server.client.microphone import MicrophoneError, microphone_frames
from stt_server.client.streaming import (
    ClientError,
    SessionResult,
    file_frames,
    run_session,
    then_silence,
)

DEFAULT_URL = "ws://localhost:15751/ws/transcribe"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="stt-client", description="Stream audio to stt-server and print the transcript."
    )
    parser.add_argument("file", nargs="?", type=Path, help="audio file; omit for the microphone")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"server endpoint ({DEFAULT_URL})")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="N× real time for files; 0 = unpaced (1)"
    )
    parser.add_argument("--binary", action="store_true", help="send raw PCM binary frames")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("STT_API_KEY") or None,
        help="the server's key, sent as Authorization: Bearer (default: $STT_API_KEY)",
    )
    parser.add_argument("--json", action="store_true", help="print server messages as JSON")
    parser.add_argument("--device", type=int, help="microphone device index (skips the prompt)")
    parser.add_argument(
        "--trailing-silence",
        type=float,
        default=2.5,
        help="seconds of silence sent at the end so the last turn ends (2.5)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=60.0,
        help="seconds to wait, after the last frame, for the server to finish (60)",
    )
    args = parser.parse_args(argv)
    if args.speed < 0:
        parser.error("--speed must be >= 0")
    return args


def make_display(as_json: bool) -> Display:
    if as_json:
        return JsonDisplay()
    if sys.stdout.isatty():
        return LiveDisplay()
    return LineDisplay()


async def _run(args: argparse.Namespace) -> SessionResult:
    frames: AsyncIterator[Audio]
    if args.file is not None:
        audio = await asyncio.to_thread(load_audio, args.file)
        frames = file_frames(audio, speed=args.speed)
    else:
        # The first Ctrl-C ends the recording and waits for the last final; a second one quits.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_interrupt() -> None:
            if stop.is_set():
                loop.remove_signal_handler(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)
            stop.set()

        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        frames = microphone_frames(args.device, stop)
    frames = then_silence(frames, args.trailing_silence)
    display = make_display(args.json)
    try:
        return await run_session(
            args.url,
            frames,
            display,
            binary=args.binary,
            final_timeout=args.wait,
            api_key=args.api_key,
        )
    finally:
        display.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = asyncio.run(_run(args))
    except (AudioFileError, MicrophoneError, ClientError) as exc:
        print(f"stt-client: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    if result.errors:
        print(f"stt-client: the server reported {len(result.errors)} error(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
