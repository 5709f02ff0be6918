"""The cost of streaming: WER of streamed vs whole-file transcription, and end-of-speech latency.

Starts `stt-server --engine whisper` (whisper-base, int8, CPU) as its own process, streams
espeak-ng recordings over a real WebSocket in 20 ms frames at real-time pace, and compares the
final segments with one whole-file transcription of the same audio by the same engine.
Latency = time the final segment (isEndOfTurn) arrives − end of the turn's last spoken sample;
it includes the 1.5 s large gap the VAD waits for by design. Prints numbers; asserts nothing.

    .venv/bin/python benchmarks/bench_streaming_wer.py [--fast]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.espeak_speech import TURN_SETS
from stt_server.engines.whisper import WhisperEngine
from stt_server.engines.whisper_assets import assemble
from tests.conftest import REPO, server_process
from tests.stt_server.speech import Recording, make_recording, word_error_rate
from tests.stt_server.wsclient import stream_audio


async def stream_one(address: str, recording: Recording, realtime: bool) -> tuple[str, list[float]]:
    result = await stream_audio(
        f"ws://{address}/ws/transcribe",
        recording.audio,
        realtime=realtime,
        expected_finals=len(recording.turns),
        idle_timeout=60,
    )
    ends = [
        end
        for (_, end), pause in zip(recording.spans, recording.pauses, strict=True)
        if pause >= 1.5
    ]
    finals = result.finals
    latencies = [f.at - end for f, end in zip(finals, ends, strict=False)] if realtime else []
    return " ".join(f.message["text"] for f in finals), latencies


async def stream_many(
    address: str, recording: Recording, realtime: bool, sessions: int
) -> list[tuple[str, list[float]]]:
    return await asyncio.gather(
        *(stream_one(address, recording, realtime) for _ in range(sessions))
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--fast", action="store_true", help="stream as fast as possible (no latency)"
    )
    parser.add_argument(
        "--sessions", type=int, default=1, help="concurrent sessions streaming each recording"
    )
    args = parser.parse_args()

    model_dir = assemble(REPO / "models" / "whisper-base")
    recordings = [make_recording(sentences, pauses) for sentences, pauses in TURN_SETS]
    engine = WhisperEngine(str(model_dir), device="cpu")
    whole = [engine.transcribe([r.audio])[0] for r in recordings]
    del engine

    streamed: list[str] = []
    latencies: list[float] = []
    session_wers: list[float] = []
    started = time.monotonic()
    command = [sys.executable, "-m", "stt_server", "--engine", "whisper"]
    with server_process(*command, "--model", str(model_dir), device="auto") as address:
        for recording in recordings:
            texts = asyncio.run(stream_many(address, recording, not args.fast, args.sessions))
            streamed.append(texts[0][0])
            session_wers += [word_error_rate(recording.text, text) for text, _ in texts]
            latencies += [lat for _, lats in texts for lat in lats]
    elapsed = time.monotonic() - started

    reference = " ".join(r.text for r in recordings)
    words = len(reference.split())
    audio_s = sum(len(r.audio) for r in recordings) / 16000
    print(f"date: {datetime.date.today()}  machine: {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"engine: whisper-base (CTranslate2 int8, CPU), beam 2; {len(recordings)} espeak-ng")
    print(f"recordings, {words} words, {audio_s:.1f} s audio; streamed in 20 ms frames")
    pace = "real time" if not args.fast else "as fast as possible"
    print(f"{pace}, {args.sessions} concurrent session(s) per recording, in {elapsed:.1f} s\n")
    whole_wer = word_error_rate(reference, " ".join(whole))
    streamed_wer = word_error_rate(reference, " ".join(streamed))
    print("| transcription | WER |")
    print("|---|---|")
    print(f"| whole file (one call per recording) | {whole_wer:.3f} |")
    print(f"| streamed (VAD chunks + 5 s overlap + merge) | {streamed_wer:.3f} |")
    for i, (r, w, s) in enumerate(zip(recordings, whole, streamed, strict=True)):
        pair = f"{word_error_rate(r.text, w):.3f} / {word_error_rate(r.text, s):.3f}"
        print(f"| recording {i + 1}: whole / streamed | {pair} |")
    if args.sessions > 1:
        print(f"| streamed, mean over all sessions | {statistics.mean(session_wers):.3f} |")
    if latencies:
        print(
            f"\nend of speech → final segment, {len(latencies)} turns (incl. the 1.5 s large gap):"
        )
        mean, median = statistics.mean(latencies), statistics.median(latencies)
        print(
            f"mean {mean:.2f} s, median {median:.2f} s, "
            f"min {min(latencies):.2f} s, max {max(latencies):.2f} s"
        )
    for i, (w, s) in enumerate(zip(whole, streamed, strict=True)):
        print(f"\n[{i + 1}] whole:    {w}\n[{i + 1}] streamed: {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
