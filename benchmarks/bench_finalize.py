"""Latency of a client-ended turn: Deepgram's Finalize vs our flush vs the server's own turn end.

Starts `stt-server --engine whisper` (whisper-base, int8, CPU) as its own process and streams each
utterance of /work/shared/real-speech (refs.json; read from there, never copied) in 20 ms binary
frames at real-time pace, one session per utterance, in three ways:

- `/v1/listen` (Deepgram dialect), `{"type": "Finalize"}` sent 300 ms after the end of speech;
- `/ws/transcribe`, `{"type": "flush"}` sent 300 ms after the end of speech;
- `/ws/transcribe` without any flush: the turn ends after the server's large gap (1.5 s);
- with `--with-interims`, also `/v1/listen` with `interim_results=true`: /ws/transcribe decodes
  interims every second of speech by default, /v1/listen only when asked, as Deepgram does.

Latency = arrival of the turn's final − the moment the end-of-speech sample was sent (frames go
out on a fixed real-time schedule). End of speech per file: the end of the last segment Silero
VAD (the silero-vad package, whole file, threshold 0.5, no padding) finds. After the file's
audio, silence is streamed until the final arrives. Prints numbers; asserts nothing.

    .venv/bin/python benchmarks/bench_finalize.py [--limit N] [--with-interims]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stt_server.audio import SAMPLE_RATE, encode_pcm16, resample
from stt_server.engines.whisper_assets import assemble
from tests.conftest import REPO, server_process
from tests.stt_server.speech import word_error_rate

SPEECH_DIR = Path("/work/shared/real-speech")
FRAME_SECONDS = 0.02
FLUSH_AFTER = 0.3  # seconds after the end of speech the client ends the turn
TAIL_SECONDS = 6.0  # silence streamed after the file at most (the large gap is 1.5 s)


@dataclass(frozen=True)
class Utterance:
    name: str
    reference: str
    audio: npt.NDArray[np.float32]  # 16 kHz mono
    speech_end: float  # seconds


@dataclass(frozen=True)
class Mode:
    label: str
    path: str
    flush: str | None  # the text message that ends the turn, if the client ends it
    text: Callable[[dict[str, Any]], str]
    is_final: Callable[[dict[str, Any]], bool]


MODES = [
    Mode(
        "/v1/listen, Finalize at +300 ms",
        "/v1/listen?encoding=linear16&sample_rate=16000&punctuate=true",
        json.dumps({"type": "Finalize"}),
        lambda m: m["channel"]["alternatives"][0]["transcript"],
        lambda m: m.get("type") == "Results" and bool(m.get("is_final")),
    ),
    # Same as the first, with interims: /ws/transcribe decodes interims by default, and on a
    # small CPU those decodes compete with the final's (see --with-interims).
    Mode(
        "/v1/listen + interim_results, Finalize at +300 ms",
        "/v1/listen?encoding=linear16&sample_rate=16000&punctuate=true&interim_results=true",
        json.dumps({"type": "Finalize"}),
        lambda m: m["channel"]["alternatives"][0]["transcript"],
        lambda m: m.get("type") == "Results" and bool(m.get("is_final")),
    ),
    Mode(
        "/ws/transcribe, flush at +300 ms",
        "/ws/transcribe",
        json.dumps({"type": "flush"}),
        lambda m: m["text"],
        lambda m: bool(m.get("isEndOfTurn")),
    ),
    Mode(
        "/ws/transcribe, no flush (1.5 s gap)",
        "/ws/transcribe",
        None,
        lambda m: m["text"],
        lambda m: bool(m.get("isEndOfTurn")),
    ),
]


def speech_end(audio: npt.NDArray[np.float32], model: Any) -> float:
    import torch
    from silero_vad import get_speech_timestamps

    spans = get_speech_timestamps(
        torch.from_numpy(audio), model, sampling_rate=SAMPLE_RATE, speech_pad_ms=0
    )
    return spans[-1]["end"] / SAMPLE_RATE if spans else len(audio) / SAMPLE_RATE


def load(limit: int | None) -> list[Utterance]:
    from silero_vad import load_silero_vad

    model = load_silero_vad(onnx=True)
    references: dict[str, str] = json.loads((SPEECH_DIR / "refs.json").read_text())
    utterances: list[Utterance] = []
    for name in sorted(references)[:limit]:
        data, rate = soundfile.read(SPEECH_DIR / name, dtype="float32", always_2d=True)
        audio = resample(data.mean(axis=1).astype(np.float32), int(rate), SAMPLE_RATE)
        utterances.append(Utterance(name, references[name], audio, speech_end(audio, model)))
    return utterances


async def one(address: str, mode: Mode, utterance: Utterance) -> tuple[float, str]:
    """Stream one utterance; the latency of its turn's final and the final's text."""
    audio = np.concatenate([utterance.audio, np.zeros(int(TAIL_SECONDS * SAMPLE_RATE), np.float32)])
    step = round(FRAME_SECONDS * SAMPLE_RATE)
    frames = [encode_pcm16(audio[i : i + step]) for i in range(0, len(audio), step)]
    loop = asyncio.get_running_loop()
    async with websockets.connect(f"ws://{address}{mode.path}") as ws:
        start = loop.time()
        end_wall = start + utterance.speech_end
        flush_at = utterance.speech_end + FLUSH_AFTER

        async def send() -> None:
            flushed = mode.flush is None
            for i, frame in enumerate(frames):
                at = i * FRAME_SECONDS
                if not flushed and at >= flush_at:
                    await asyncio.sleep(max(0.0, start + flush_at - loop.time()))
                    await ws.send(mode.flush or "")
                    flushed = True
                await asyncio.sleep(max(0.0, start + at - loop.time()))
                await ws.send(frame)

        sender = asyncio.create_task(send())
        try:
            async with asyncio.timeout(len(audio) / SAMPLE_RATE + 60):
                while True:
                    message = json.loads(await ws.recv())
                    # A final before the end of speech ended a turn inside the utterance.
                    if mode.is_final(message) and loop.time() > end_wall:
                        return loop.time() - end_wall, mode.text(message)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--limit", type=int, default=None, help="only the first N utterances")
    parser.add_argument(
        "--with-interims",
        action="store_true",
        help="also /v1/listen with interim_results=true (like /ws/transcribe's default)",
    )
    args = parser.parse_args()
    modes = [m for m in MODES if args.with_interims or "interim_results" not in m.label]

    utterances = load(args.limit)
    model_dir = assemble(REPO / "models" / "whisper-base")
    command = [sys.executable, "-m", "stt_server", "--engine", "whisper"]
    results: dict[str, list[tuple[float, str]]] = {m.label: [] for m in modes}
    started = time.monotonic()
    with server_process(*command, "--model", str(model_dir), device="auto") as address:
        # Interleaved (mode after mode per utterance), so a load change on the machine
        # touches all three alike.
        for utterance in utterances:
            for mode in modes:
                results[mode.label].append(asyncio.run(one(address, mode, utterance)))
    elapsed = time.monotonic() - started

    audio_s = sum(len(u.audio) for u in utterances) / SAMPLE_RATE
    print(f"date: {datetime.date.today()}  machine: {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"engine: whisper-base (CTranslate2 int8, CPU); {len(utterances)} utterances from")
    print(
        f"{SPEECH_DIR}, {audio_s:.1f} s audio, each mode streamed in real time; {elapsed:.0f} s\n"
    )
    print("end of speech → turn's final (s)\n")
    print("| mode | n | p50 | p95 | mean | max | WER |")
    print("|---|---|---|---|---|---|---|")
    reference = " ".join(u.reference for u in utterances)
    for label, pairs in results.items():
        lat = [latency for latency, _ in pairs]
        wer = word_error_rate(reference, " ".join(text for _, text in pairs))
        print(
            f"| {label} | {len(lat)} | {percentile(lat, 50):.2f} | {percentile(lat, 95):.2f} | "
            f"{statistics.mean(lat):.2f} | {max(lat):.2f} | {wer:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
