"""Time to final segment (TTFS): how fast a finished utterance comes back as a final transcript.

Starts `stt-server` (whisper-base on CPU, or the fixed-cost engine for the server's overhead
alone) as its own process and streams the 21 real recordings of shared/real-speech
(`--corpus espeak`: 18 espeak-ng turns, benchmarks/espeak_speech.py), one connection each, in
binary 20 ms frames at real-time pace (frame k leaves when its last sample would have been
spoken), followed by silence until the final arrives. `--endpoint deepgram` streams over
`/v1/listen` (Deepgram's live protocol: `Finalize` for the flush, `interim_results=true` where
the setting has interims, the turn's final = the `Results` with `speech_final`); settings
without speculation have no Deepgram parameter and are refused there. Per setting it reports:

* TTFS p50/p95/p99: arrival of the turn's final (isEndOfTurn) − the wall time of the last sample
  of speech (Silero over the whole file; see benchmarks/real_speech.py);
* first text: arrival of the first segment with text − start of speech;
* largest gap between segments during speech (start of speech, every arrival, end of speech);
* WER of the finals against refs.json (lower case, no punctuation; jiwer, over all words);
* engine share: the server's `stt_engine_seconds` (GET /metrics before and after each utterance)
  divided by its batch count is the mean engine time of one decode of that utterance (chunks,
  speculations and interims alike; a whisper decode's cost grows with its audio, so this is a
  typical decode, not the final's own). Share = that / TTFS (the rest: the wait for the large
  gap or the client's flush, VAD, queueing, merging, the socket);
* false ends of turn: utterances with more than one final, or a final before the end of speech.

Settings: baseline (speculate=false, interimInterval=0, no flush: the old behaviour),
+ speculation, + interims, + flush 300 ms and + flush 200 ms after the end of speech (what an
agent's own VAD would send). `--streams N` runs N concurrent clients (random start within
`--stagger` s), each streaming utterances back to back for `--seconds` of audio.

With `--streams N` it also prints, per setting, the server's own final latency
(`stt_final_latency_seconds` between two scrapes, interpolated in its buckets: from the later of
the end of speech and the flush's arrival to the final's send) and how late the load generator
sent its flushes: on a shared 2-core machine the clients' own lag is part of what they measure.

`--peer ws://HOST:PORT/asr` also streams the same utterances, in the same run, to a running
WhisperLiveKit server (`whisperlivekit-server --pcm-input`); it has no end-of-turn final, so
its TTFS is when its displayed text (committed lines + buffer) last changed, measured during
`--peer-tail` s of trailing silence, and its committed-lines time beside it.

    .venv/bin/python benchmarks/bench_ttfs.py [--engine whisper|fixed-cost] [--streams 1] \
        [--corpus real|espeak] [--endpoint native|deepgram] \
        [--settings baseline spec interims flush300 flush200] [--peer ws://127.0.0.1:18001/asr]

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools

import httpx
import numpy as np
import websockets

from benchmarks.espeak_speech import espeak_utterances
from benchmarks.real_speech import Utterance, corpus_wer, load_utterances
from stt_server.audio import SAMPLE_RATE, encode_pcm16
from stt_server.engines.whisper_assets import assemble
from tests.conftest import REPO, server_process

FRAME_S = 0.02
FRAME = int(SAMPLE_RATE * FRAME_S)
MAX_TAIL = 10.0  # s of silence after the file before giving up on the final

# name → (query, flush delay after the end of speech or None)
SETTINGS: dict[str, tuple[str, float | None]] = {
    "baseline": ("speculate=false&interimInterval=0", None),
    "spec": ("speculate=true&interimInterval=0", None),
    "interims": ("speculate=true&interimInterval=1.0", None),
    "flush300": ("speculate=true&interimInterval=1.0", 0.3),
    "flush200": ("speculate=true&interimInterval=1.0", 0.2),
    # the same without interims: what an interim decode in flight costs the final
    "flush200-no-interims": ("speculate=true&interimInterval=0", 0.2),
}


@dataclass(frozen=True)
class Endpoint:
    """Where a session is opened and how its messages read, per protocol."""

    name: str

    def url(self, address: str, query: str) -> str:
        if self.name == "native":
            return f"ws://{address}/ws/transcribe?{query}"
        settings = dict(part.split("=", 1) for part in query.split("&"))
        if settings.get("speculate") == "false":
            raise ValueError("/v1/listen has no parameter that turns speculation off")
        interims = float(settings.get("interimInterval", "0")) > 0
        return (
            f"ws://{address}/v1/listen?encoding=linear16&sample_rate={SAMPLE_RATE}&channels=1"
            f"&punctuate=true&interim_results={str(interims).lower()}"
        )

    @property
    def flush(self) -> str:
        return json.dumps({"type": "flush" if self.name == "native" else "Finalize"})

    def read(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """The message in /ws/transcribe's terms (text, isFinal, isEndOfTurn, code); None for
        the messages that carry no text (Deepgram's Metadata, SpeechStarted, UtteranceEnd)."""
        if self.name == "native":
            return message
        if message.get("type") == "Error":
            return {"code": message.get("err_code", "error")}
        if message.get("type") != "Results":
            return None
        return {
            "text": message["channel"]["alternatives"][0]["transcript"],
            "isFinal": message["is_final"],
            "isEndOfTurn": message["speech_final"] or message.get("from_finalize", False),
        }


@dataclass
class Run:
    """One utterance streamed once; times in s of the connection's clock (first frame = 0)."""

    utterance: Utterance
    arrivals: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    engine_seconds: float = 0.0
    engine_batches: int = 0
    flush_late: float | None = None  # the flush left this long after its due time (client lag)
    failure: str | None = None

    @property
    def finals(self) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.arrivals if m.get("isFinal")]

    @property
    def text(self) -> str:
        return " ".join(m["text"] for _, m in self.finals)

    @property
    def ttfs(self) -> float | None:
        end = self.utterance.speech_end
        after = [t for t, m in self.finals if t >= end and m.get("isEndOfTurn")]
        return after[0] - end if after else None

    @property
    def first_text(self) -> float | None:
        texts = [t for t, m in self.arrivals if m.get("text")]
        return texts[0] - self.utterance.speech_start if texts else None

    @property
    def largest_gap(self) -> float:
        start, end = self.utterance.speech_start, self.utterance.speech_end
        times = [start, *(t for t, m in self.arrivals if start < t < end and "text" in m), end]
        return max(b - a for a, b in itertools.pairwise(times))

    @property
    def false_end_of_turn(self) -> bool:
        finals = self.finals
        return len(finals) > 1 or any(t < self.utterance.speech_end for t, _ in finals)


def histogram(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts (upper bound → count) of one histogram in /metrics text."""
    buckets: dict[float, float] = {}
    for bound, value in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M):
        buckets[float(bound)] = buckets.get(float(bound), 0.0) + float(value)
    return buckets


def histogram_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The q-quantile of what a histogram observed between two scrapes, interpolated linearly
    inside its bucket (as Prometheus' histogram_quantile does)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return float("nan")
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def frames(audio: np.ndarray) -> list[bytes]:
    return [encode_pcm16(audio[i : i + FRAME]) for i in range(0, len(audio), FRAME)]


async def scrape(client: httpx.AsyncClient, address: str) -> str:
    return (await client.get(f"http://{address}/metrics")).text


def engine_counters(text: str) -> tuple[float, int]:
    """Sum and count of the server's `stt_engine_seconds` histogram, all devices."""
    total = sum(float(v) for v in re.findall(r"^stt_engine_seconds_sum\S* (\S+)$", text, re.M))
    count = sum(float(v) for v in re.findall(r"^stt_engine_seconds_count\S* (\S+)$", text, re.M))
    return total, int(count)


async def stream_ours(
    url: str, utterance: Utterance, flush_after: float | None, endpoint: Endpoint
) -> Run:
    run = Run(utterance)
    audio_frames = frames(utterance.audio)
    silence = encode_pcm16(np.zeros(FRAME, np.float32))
    tail_frames = int(MAX_TAIL / FRAME_S)
    flush_at = None if flush_after is None else utterance.speech_end + flush_after
    try:
        async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
            start = time.monotonic()
            done = asyncio.Event()

            async def receive() -> None:
                async for raw in ws:
                    message = endpoint.read(json.loads(raw))
                    if message is None:
                        continue
                    now = time.monotonic() - start
                    run.arrivals.append((now, message))
                    if "code" in message:
                        run.failure = f"error {message['code']}"
                    if run.ttfs is not None:
                        done.set()

            receiver = asyncio.create_task(receive())
            try:
                for i in range(len(audio_frames) + tail_frames):
                    if done.is_set() and i >= len(audio_frames):
                        break
                    due = (i + 1) * FRAME_S  # the frame's last sample has been spoken
                    if flush_at is not None and flush_at <= due:
                        await asyncio.sleep(max(0.0, start + flush_at - time.monotonic()))
                        await ws.send(endpoint.flush)
                        run.flush_late = time.monotonic() - start - flush_at
                        flush_at = None
                    await asyncio.sleep(max(0.0, start + due - time.monotonic()))
                    await ws.send(audio_frames[i] if i < len(audio_frames) else silence)
                if not done.is_set():
                    run.failure = run.failure or f"no final within {MAX_TAIL} s of silence"
            finally:
                receiver.cancel()
                await asyncio.gather(receiver, return_exceptions=True)
    except (OSError, websockets.WebSocketException) as exc:
        run.failure = f"{type(exc).__name__}: {exc}"
    return run


async def run_one_stream(
    address: str,
    utterances: list[Utterance],
    query: str,
    flush_after: float | None,
    endpoint: Endpoint,
) -> list[Run]:
    runs = []
    url = endpoint.url(address, query)
    async with httpx.AsyncClient() as client:
        for utterance in utterances:
            before = engine_counters(await scrape(client, address))
            run = await stream_ours(url, utterance, flush_after, endpoint)
            await asyncio.sleep(1.0)  # a speculative or interim decode still running
            after = engine_counters(await scrape(client, address))
            run.engine_seconds, run.engine_batches = after[0] - before[0], after[1] - before[1]
            runs.append(run)
    return runs


async def run_many_streams(
    address: str,
    utterances: list[Utterance],
    query: str,
    flush_after: float | None,
    streams: int,
    seconds: float,
    stagger: float,
    endpoint: Endpoint,
) -> tuple[list[Run], float, int]:
    rng = random.Random(0)
    url = endpoint.url(address, query)

    async def client(first: int) -> list[Run]:
        await asyncio.sleep(rng.uniform(0, stagger))
        runs: list[Run] = []
        streamed, i = 0.0, first
        while streamed < seconds:
            utterance = utterances[i % len(utterances)]
            runs.append(await stream_ours(url, utterance, flush_after, endpoint))
            streamed += utterance.duration
            i += 1
        return runs

    async with httpx.AsyncClient() as http:
        scraped_before = await scrape(http, address)
        results = await asyncio.gather(
            *(client(rng.randrange(len(utterances))) for _ in range(streams))
        )
        scraped_after = await scrape(http, address)
    before, after = engine_counters(scraped_before), engine_counters(scraped_after)
    latency_before = histogram(scraped_before, "stt_final_latency_seconds")
    latency_after = histogram(scraped_after, "stt_final_latency_seconds")
    # The server's own view of the same finals: from the flush's arrival (or the end of speech)
    # to the final's send, without the load generator's lag on this shared machine.
    server = [histogram_quantile(latency_before, latency_after, q) for q in (0.5, 0.95, 0.99)]
    print(
        "  server-side final latency (stt_final_latency_seconds, interpolated in its buckets) "
        "p50 / p95 / p99: " + " / ".join(f"{v:.3f}" for v in server),
        file=sys.stderr,
    )
    return [r for runs in results for r in runs], after[0] - before[0], after[1] - before[1]


@dataclass
class PeerRun:
    utterance: Utterance
    text: str = ""
    text_settled: float | None = None  # last change of lines + buffer − end of speech
    committed_settled: float | None = None  # last change of committed lines − end of speech
    first_text: float | None = None  # first non-empty text − start of speech
    largest_gap: float = 0.0
    failure: str | None = None


def _peer_texts(message: dict[str, Any]) -> tuple[str, str]:
    lines = " ".join(line.get("text", "") for line in message.get("lines", []) if line.get("text"))
    return lines.strip(), " ".join([lines, message.get("buffer_transcription", "")]).strip()


async def stream_peer(url: str, utterance: Utterance, tail: float) -> PeerRun:
    """WhisperLiveKit: raw s16le PCM in, full state (`lines`, `buffer_transcription`) out."""
    run = PeerRun(utterance)
    audio = np.concatenate([utterance.audio, np.zeros(int(tail * SAMPLE_RATE), np.float32)])
    changes: list[tuple[float, str, str]] = []  # (time, committed, displayed) on each change
    sent_all = float("inf")
    try:
        async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
            json.loads(await ws.recv())  # its config message
            start = time.monotonic()

            async def receive() -> None:
                async for raw in ws:
                    if isinstance(raw, bytes):
                        continue
                    message = json.loads(raw)
                    if message.get("type") == "ready_to_stop":
                        return
                    if message.get("type") not in (None, "transcript_update"):
                        continue
                    committed, displayed = _peer_texts(message)
                    if not changes or (committed, displayed) != changes[-1][1:]:
                        changes.append((time.monotonic() - start, committed, displayed))

            receiver = asyncio.create_task(receive())
            for i, frame in enumerate(frames(audio)):
                await asyncio.sleep(max(0.0, start + (i + 1) * FRAME_S - time.monotonic()))
                await ws.send(frame)
            sent_all = time.monotonic() - start
            await ws.send(b"")  # end of stream
            try:
                await asyncio.wait_for(receiver, 60)
            except TimeoutError:
                run.failure = "no ready_to_stop within 60 s"
    except (OSError, websockets.WebSocketException) as exc:
        run.failure = f"{type(exc).__name__}: {exc}"
    if not changes:
        return run
    end, begin = utterance.speech_end, utterance.speech_start
    run.text = changes[-1][2]
    before_end = [c for c in changes if c[0] <= sent_all]
    if before_end and before_end[-1][2] == run.text:  # else it needed the end of stream
        run.text_settled = before_end[-1][0] - end
        committed = [t for i, (t, c, _) in enumerate(before_end) if c != before_end[i - 1][1]]
        run.committed_settled = (committed[-1] if committed else before_end[0][0]) - end
    texts = [t for t, _, d in changes if d]
    run.first_text = texts[0] - begin if texts else None
    times = [begin, *(t for t, _, _ in changes if begin < t < end), end]
    run.largest_gap = max(b - a for a, b in itertools.pairwise(times))
    return run


def percentiles(values: list[float]) -> str:
    if not values:
        return "– / – / –"
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return f"{p50:.2f} / {p95:.2f} / {p99:.2f}"


def ms(values: list[float]) -> str:
    return f"{np.median(values):.2f} / {max(values):.2f}" if values else "–"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--engine", choices=["whisper", "fixed-cost"], default="whisper")
    parser.add_argument("--cost", default="50ms", help="fixed-cost engine's cost per batch")
    parser.add_argument("--settings", nargs="*", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="audio per client (--streams>1)"
    )
    parser.add_argument("--stagger", type=float, default=5.0)
    parser.add_argument("--limit", type=int, default=0, help="only the first N utterances")
    parser.add_argument("--corpus", choices=["real", "espeak"], default="real")
    parser.add_argument("--endpoint", choices=["native", "deepgram"], default="native")
    parser.add_argument("--peer", help="WhisperLiveKit WebSocket URL (…/asr), --pcm-input")
    parser.add_argument("--peer-tail", type=float, default=3.0)
    parser.add_argument(
        "--server-args",
        default="--max-backlog 0 --max-sessions 1000",
        help="extra server flags (default: no admission check and room for the sessions that "
        "linger while each stream reconnects; either would refuse sessions and turn a latency "
        "figure into a failure count)",
    )
    args = parser.parse_args()

    endpoint = Endpoint(args.endpoint)
    utterances = load_utterances() if args.corpus == "real" else espeak_utterances()
    if args.limit:
        utterances = utterances[: args.limit]
    model = (
        str(assemble(REPO / "models" / "whisper-base")) if args.engine == "whisper" else args.cost
    )
    command = [sys.executable, "-m", "stt_server", "--engine", args.engine, "--model", model]
    print(
        f"date: {datetime.datetime.now():%Y-%m-%d %H:%M}  machine: {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}"
    )
    print(
        f"server: {' '.join(command[2:])} {args.server_args}; {len(utterances)} {args.corpus} "
        f"utterances, {sum(u.duration for u in utterances):.1f} s; {args.streams} stream(s) "
        f"over {'/ws/transcribe' if endpoint.name == 'native' else '/v1/listen'}\n"
    )
    header = (
        "| setting | TTFS p50 / p95 / p99 (s) | first text p50 / max (s) | largest gap p50 / max "
        "(s) | WER | engine s per decode | engine share of TTFS p50 | false EOT | failed | load |"
    )
    print(header)
    print("|---" * 10 + "|")
    with server_process(*command, *args.server_args.split(), device="auto") as address:
        health = httpx.get(f"http://{address}/health").json()
        print(f"  server devices: {health.get('devices')}", file=sys.stderr)
        for name in args.settings:
            query, flush_after = SETTINGS[name]
            if args.streams == 1:
                runs = asyncio.run(
                    run_one_stream(address, utterances, query, flush_after, endpoint)
                )
                per_decode = [r.engine_seconds / r.engine_batches for r in runs if r.engine_batches]
                engine = float(np.mean(per_decode)) if per_decode else 0.0
            else:
                runs, seconds, batches = asyncio.run(
                    run_many_streams(
                        address,
                        utterances,
                        query,
                        flush_after,
                        args.streams,
                        args.seconds,
                        args.stagger,
                        endpoint,
                    )
                )
                engine = seconds / batches if batches else 0.0
            ttfs = [t for r in runs if (t := r.ttfs) is not None]
            first = [t for r in runs if (t := r.first_text) is not None]
            gaps = [r.largest_gap for r in runs]
            wer = corpus_wer([r.utterance.reference for r in runs], [r.text for r in runs])
            share = engine / float(np.median(ttfs)) if ttfs else 0.0
            false_eot = sum(r.false_end_of_turn for r in runs)
            failed = [r.failure for r in runs if r.failure]
            print(
                f"| {name} | {percentiles(ttfs)} | {ms(first)} | {ms(gaps)} | {wer:.3f} | "
                f"{engine:.3f} | {share:.0%} | {false_eot}/{len(runs)} | {len(failed)} | "
                f"{os.getloadavg()[0]:.2f} |",
                flush=True,
            )
            late = [r.flush_late for r in runs if r.flush_late is not None]
            if late:
                p50, p99 = np.percentile(late, [50, 99])
                print(
                    f"  flush sent late by the client (its own lag) p50 / p99: {p50:.3f} / "
                    f"{p99:.3f} s",
                    file=sys.stderr,
                )
            for failure in sorted(set(f for f in failed if f))[:3]:
                print(f"  failure: {failure}", file=sys.stderr)
            if os.environ.get("BENCH_TTFS_VERBOSE"):
                for r in runs:
                    print(
                        f"  {r.utterance.name} ttfs={r.ttfs} first text={r.first_text} "
                        f"finals={len(r.finals)} {r.text!r}",
                        file=sys.stderr,
                    )
    if args.peer:
        peer_runs = [asyncio.run(stream_peer(args.peer, u, args.peer_tail)) for u in utterances]
        settled = [t for r in peer_runs if (t := r.text_settled) is not None]
        committed = [t for r in peer_runs if (t := r.committed_settled) is not None]
        first = [t for r in peer_runs if (t := r.first_text) is not None]
        gaps = [r.largest_gap for r in peer_runs]
        wer = corpus_wer([r.utterance.reference for r in peer_runs], [r.text for r in peer_runs])
        print(f"\npeer {args.peer} (WhisperLiveKit), {args.peer_tail} s trailing silence:")
        print(
            "| peer | text settled p50 / p95 / p99 (s) | committed settled p50 / p95 / p99 (s) "
            "| first text p50 / max (s) | largest gap p50 / max (s) | WER | failed | load |"
        )
        print("|---" * 8 + "|")
        print(
            f"| whisperlivekit | {percentiles(settled)} | {percentiles(committed)} | {ms(first)} "
            f"| {ms(gaps)} | {wer:.3f} | {sum(1 for r in peer_runs if r.failure)} | "
            f"{os.getloadavg()[0]:.2f} |"
        )
        if os.environ.get("BENCH_TTFS_VERBOSE"):
            for r in peer_runs:
                print(f"  {r.utterance.name} settled={r.text_settled} {r.text!r}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
