"""Simulated voice-agent clients for load tests and the capacity benchmark.

Each client streams a recording in binary 20 ms frames at real-time pace (or as fast as the
socket takes them) and times every turn: from the moment the frame holding the turn's last
spoken sample was sent to the arrival of the turn's final segment. A final that arrives before
the next turn's last spoken sample was sent is not that turn's: the server ended a turn inside
the speech, or made one of noise. It is counted apart (`extra_finals`) and the turns after it
are still timed against their own finals.

    python -m tests.stt_server.load.loadgen --url ws://127.0.0.1:15751/ws/transcribe \
        --clients 100 [--seconds 30] [--stagger 3]

prints one JSON object: per-client results and this process's CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import numpy.typing as npt
import websockets

from stt_server.audio import SAMPLE_RATE, encode_pcm16


@dataclass
class ClientResult:
    expected_finals: int
    finals: int = 0  # finals matched to a turn
    extra_finals: int = 0  # finals before the next turn's speech had ended
    segments: int = 0
    errors: list[str] = field(default_factory=list)  # error codes the server sent
    failure: str | None = None  # the connection failed (not a clean end)
    latencies: list[float] = field(default_factory=list)  # s, speech end sent → final arrived
    max_lag: float = 0.0  # s, worst lateness of a frame behind its real-time schedule

    @property
    def ok(self) -> bool:
        return not self.errors and self.failure is None and self.finals == self.expected_finals


def frames_of(audio: npt.NDArray[np.float32], frame_ms: float = 20.0) -> list[bytes]:
    step = int(SAMPLE_RATE * frame_ms / 1000)
    return [encode_pcm16(audio[i : i + step]) for i in range(0, len(audio), step)]


def end_frames(speech_ends: list[float], frame_ms: float = 20.0) -> list[int]:
    """Index of the frame that carries the last sample of each turn's speech."""
    step = int(SAMPLE_RATE * frame_ms / 1000)
    return [max(0, math.ceil(end * SAMPLE_RATE / step) - 1) for end in speech_ends]


async def run_client(
    url: str,
    frames: list[bytes],
    turn_end_frames: list[int],
    *,
    frame_ms: float = 20.0,
    realtime: bool = True,
    start_delay: float = 0.0,
    idle_timeout: float = 30.0,
    ping_interval: float | None = 20.0,
) -> ClientResult:
    result = ClientResult(expected_finals=len(turn_end_frames))
    await asyncio.sleep(start_delay)
    sent_at: dict[int, float] = {}
    ends = set(turn_end_frames)
    try:
        async with websockets.connect(
            url, max_size=None, open_timeout=60, ping_interval=ping_interval
        ) as ws:

            async def send() -> None:
                start = time.monotonic()
                for i, frame in enumerate(frames):
                    if realtime:
                        due = start + i * frame_ms / 1000
                        now = time.monotonic()
                        if due > now:
                            await asyncio.sleep(due - now)
                        else:
                            result.max_lag = max(result.max_lag, now - due)
                    await ws.send(frame)
                    if i in ends:
                        sent_at[i] = time.monotonic()

            async def receive() -> None:
                while result.finals < result.expected_finals:
                    message = json.loads(await ws.recv())
                    now = time.monotonic()
                    if "code" in message:
                        result.errors.append(str(message["code"]))
                    elif message.get("isFinal"):
                        turn = turn_end_frames[result.finals]
                        if turn in sent_at:
                            result.latencies.append(now - sent_at[turn])
                            result.finals += 1
                        else:
                            result.extra_finals += 1
                        result.segments += 1
                    else:
                        result.segments += 1

            receiver = asyncio.create_task(receive())
            try:
                await send()
                await asyncio.wait_for(asyncio.shield(receiver), idle_timeout)
            except TimeoutError:
                result.failure = f"timed out with {result.finals}/{result.expected_finals} finals"
            finally:
                receiver.cancel()
                await asyncio.gather(receiver, return_exceptions=True)
    except (OSError, websockets.WebSocketException) as exc:
        result.failure = f"{type(exc).__name__}: {exc}"
    return result


async def run_clients(
    url: str,
    clients: int,
    frames: list[bytes],
    turn_end_frames: list[int],
    *,
    stagger: float = 3.0,
    seed: int = 0,
    **options: float | bool,
) -> list[ClientResult]:
    """`clients` concurrent clients, each starting at a random moment within `stagger` s."""
    rng = random.Random(seed)
    return await asyncio.gather(
        *(
            run_client(
                url,
                frames,
                turn_end_frames,
                start_delay=rng.uniform(0, stagger),
                **options,  # type: ignore[arg-type]
            )
            for _ in range(clients)
        )
    )


def load_recording(seconds: float) -> tuple[npt.NDArray[np.float32], list[float]]:
    """The test recording (three turns), padded with silence to `seconds`; and its turn ends."""
    from tests.stt_server.speech import make_recording

    recording = make_recording()
    audio = recording.audio
    if len(audio) < seconds * SAMPLE_RATE:
        pad = np.zeros(int(seconds * SAMPLE_RATE) - len(audio), np.float32)
        audio = np.concatenate([audio, pad])
    ends = [
        end
        for (_, end), pause in zip(recording.spans, recording.pauses, strict=True)
        if pause >= 1.5
    ]
    return audio, ends


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--stagger", type=float, default=3.0)
    args = parser.parse_args()
    audio, ends = load_recording(args.seconds)
    frames = frames_of(audio)
    cpu = time.process_time()
    results = asyncio.run(
        run_clients(args.url, args.clients, frames, end_frames(ends), stagger=args.stagger)
    )
    print(
        json.dumps(
            {"cpu_seconds": time.process_time() - cpu, "results": [asdict(r) for r in results]}
        )
    )


if __name__ == "__main__":
    main()
