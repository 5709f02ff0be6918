"""Server capacity: how many real-time streams one server process carries, and at what cost.

Starts `stt-server --engine fixed-cost` (a stand-in for a GPU model: every batch sleeps a fixed
time, so what is measured is the server's own work: WebSocket, decoding, Silero VAD, batching,
merging) as its own process, then for each N runs N concurrent clients in separate load-generator
processes. Each client streams the espeak-ng test recording (five sentences, three turns, padded
to --seconds) in binary 20 ms frames at real-time pace, starting at a random moment within the
first --stagger seconds. Reports per N:

* server CPU seconds per audio second per stream (utime+stime from /proc/PID/stat);
* latency overhead per turn: arrival of the final segment − sending of the frame holding the
  turn's last spoken sample − the large gap (the end-of-turn pause the VAD waits for by design);
  p50/p95/p99 over all turns;
* errors: error messages, failed connections, missing finals;
* the largest N with no errors and p99 overhead < 100 ms, and (since even a single stream's
  overhead is ~80 ms of VAD hangover: Silero's probability falls some windows after the last
  word) the largest N whose p99 stays within 100 ms of the smallest level's median;
* server CPU as % of one core over the run, and the part of it spent by the event-loop thread
  (the rest: VAD/decoding worker threads and the inference thread);
* the load generators' own CPU seconds (they share the machine with the server).

    .venv/bin/python benchmarks/bench_server_capacity.py [--levels 1 10 50 100 200] \
        [--cost 50ms] [--max-batch-size 32] [--clients-per-process 100] \
        [--profile server.txt [--profile-level 100]]

`--profile` runs `py-spy record --format raw --threads` on the server during each level (one
file per level, `server.100.txt`) or only during `--profile-level`; the raw output is one line per
stack with its sample count.

`--engine whisper` measures the real engine instead (whisper-base on this CPU): each client
streams the real recordings of ../shared/real-speech (read in place, never copied), one after
another with 2.5 s of silence after each (a turn each), every client starting at a different
recording so that chunks do not arrive in lockstep. The latency column is then "end of speech →
final − the 1.5 s gap" in seconds, and the verdict is the largest N whose p90 stays within
`--bound` (2.5 s). `--variants` runs the levels once per set of extra server flags, each on its
own server, in the same run (old vs new):

    .venv/bin/python benchmarks/bench_server_capacity.py --engine whisper --levels 1 2 4 6 8 \
        --variants "--whisper-padding 30" "--whisper-padding 5"

A variant that starts with `@DIR` runs the server of another checkout (`git worktree add DIR
COMMIT`), so the code before a change and after it are measured in the same run:
`--variants "@/tmp/old" ""`. With the whisper engine each level also reports, from the
server's /metrics: engine batches, mean rows per batch, engine seconds per batch (mean), and
the interims run, interims skipped and fallback decodes.

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import math
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from stt_server.audio import SAMPLE_RATE
from tests.conftest import REPO, free_port
from tests.stt_server.load.loadgen import (
    ClientResult,
    end_frames,
    frames_of,
    load_recording,
    run_client,
    run_clients,
)

LARGE_GAP = 1.5  # the server's default end-of-turn pause
TURN_SILENCE = 2.5  # s after each real recording: past the large gap, so each is one turn
Stream = tuple[list[bytes], list[int]]  # 20 ms frames and the frames that end a turn
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    return cpu_seconds_of(Path(f"/proc/{pid}/stat"))


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU so far of each live thread of a process, by thread id (the main thread's is `pid`)."""
    times: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # thread ended
            times[int(task.name)] = cpu_seconds_of(task / "stat")
    return times


def cpu_seconds_of(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def generator(
    args: tuple[str, int, list[Stream], float, int],
) -> tuple[float, list[ClientResult]]:
    """One load-generator process: its clients, and its own CPU seconds. With one stream every
    client sends it; with several, client i sends stream i."""
    url, clients, streams, stagger, seed = args
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    start = time.process_time()
    if len(streams) == 1:
        frames, ends = streams[0]
        results = asyncio.run(
            run_clients(url, clients, frames, ends, stagger=stagger, seed=seed, idle_timeout=60.0)
        )
    else:
        results = asyncio.run(real_speech_clients(url, streams, stagger, seed))
    return time.process_time() - start, results


async def real_speech_clients(
    url: str, streams: list[Stream], stagger: float, seed: int
) -> list[ClientResult]:
    rng = np.random.default_rng(seed)
    return await asyncio.gather(
        *(
            run_client(
                url,
                frames,
                ends,
                start_delay=float(rng.uniform(0, stagger)),
                idle_timeout=120.0,
            )
            for frames, ends in streams
        )
    )


def real_speech_streams(count: int, seconds: float) -> list[Stream]:
    """`count` streams of at least `seconds` each: the real recordings back to back, each
    followed by TURN_SILENCE, stream i starting at recording i."""
    from real_speech import load_utterances

    utterances = load_utterances()
    silence = np.zeros(round(TURN_SILENCE * SAMPLE_RATE), np.float32)
    streams: list[Stream] = []
    for first in range(count):
        parts: list[np.ndarray] = []
        ends: list[float] = []
        offset = 0.0
        k = first
        while offset < seconds:
            u = utterances[k % len(utterances)]
            ends.append(offset + u.speech_end)
            parts += [u.audio, silence]
            offset += u.duration + TURN_SILENCE
            k += 1
        streams.append((frames_of(np.concatenate(parts)), end_frames(ends)))
    return streams


def profile_path(path: str, level: int, only: int | None) -> str:
    """One profile per level (`prof.txt` → `prof.50.txt`) unless only one level is profiled."""
    if only is not None:
        return path
    base = Path(path)
    return str(base.with_name(f"{base.stem}.{level}{base.suffix}"))


def engine_counts(port: int) -> dict[str, float]:
    """The server's engine counters from /metrics (summed over devices)."""
    wanted = {
        "stt_inference_batches_total": "batches",
        "stt_inference_batch_size_sum": "rows",
        "stt_engine_seconds_sum": "engine_s",
        "stt_interims_skipped_total": "interims_skipped",
        "stt_whisper_fallback_decodes_total": "fallbacks",
    }
    counts = dict.fromkeys([*wanted.values(), "interims"], 0.0)
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                counts[wanted[sample.name]] += sample.value
            elif (
                sample.name == "stt_inference_queue_wait_seconds_count"
                and sample.labels.get("priority") == "interim"
            ):
                counts["interims"] += sample.value
    return counts


def engine_summary(before: dict[str, float], after: dict[str, float]) -> str:
    d = {k: after[k] - before[k] for k in after}
    batches = max(d["batches"], 1.0)
    return (
        f"{d['batches']:.0f} batches, {d['rows'] / batches:.2f} rows each, "
        f"{d['engine_s'] / batches:.3f} s each; interims {d['interims']:.0f} run, "
        f"{d['interims_skipped']:.0f} skipped; fallback decodes {d['fallbacks']:.0f}"
    )


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 10, 50, 100, 200])
    parser.add_argument("--engine", choices=("fixed-cost", "whisper"), default="fixed-cost")
    parser.add_argument("--cost", default="50ms", help="fixed-cost engine: time per batch")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0, help="audio per stream")
    parser.add_argument("--stagger", type=float, default=3.0)
    parser.add_argument("--clients-per-process", type=int, default=100)
    parser.add_argument("--bound", type=float, default=2.5, help="whisper: p90 bound, s")
    parser.add_argument(
        "--variants", nargs="+", default=[""], help="extra server flags, one server each"
    )
    parser.add_argument("--profile", help="run py-spy record on the server; raw output here")
    parser.add_argument("--profile-level", type=int, help="only profile this N")
    args = parser.parse_args()

    whisper = args.engine == "whisper"
    if whisper:
        streams = real_speech_streams(max(args.levels), args.seconds)
        audio_s = min(len(frames) for frames, _ in streams) * 0.02
        turns = len(streams[0][1])
        engine = ["--engine", "whisper"]  # the default device: on a CPU host, an engine per core
        described = "whisper (whisper-base, CPU)"
        stream_text = f"real speech, >= {args.seconds:g} s ({turns} turns) per stream"
    else:
        audio, speech_ends = load_recording(args.seconds)
        streams = [(frames_of(audio), end_frames(speech_ends))]
        audio_s = len(audio) / SAMPLE_RATE
        engine = ["--engine", "fixed-cost", "--model", args.cost, "--device", "cpu"]
        described = f"fixed-cost {args.cost} per batch"
        stream_text = f"{audio_s:.1f} s, {len(speech_ends)} turns"
    load = os.getloadavg()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus (server and load generators "
        f"share them); python {platform.python_version()}; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; "
        f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"server: {described}, max batch {args.max_batch_size}; "
        f"stream: {stream_text}, 20 ms binary frames, real time"
    )
    for variant in args.variants:
        port = free_port()
        checkout = REPO
        if variant.startswith("@"):
            where, _, variant = variant[1:].partition(" ")
            checkout = Path(where).resolve()
        command = [
            *(sys.executable, "-m", "stt_server", *engine),
            *("--max-batch-size", str(args.max_batch_size)),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
            *("--max-sessions", str(max(args.levels) + 10)),  # the default 100 would refuse some
            *("--max-backlog", "0"),  # measure falling behind, not the refusals that prevent it
            *variant.split(),
        ]
        if variant or checkout != REPO:
            place = f" (server of {checkout})" if checkout != REPO else ""
            print(f"\n### variant: {variant or 'defaults'}{place}")
        run_levels(args, command, port, streams, audio_s, whisper, checkout)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def run_levels(
    args: argparse.Namespace,
    command: list[str],
    port: int,
    streams: list[Stream],
    audio_s: float,
    whisper: bool,
    checkout: Path,
) -> None:
    url = f"ws://127.0.0.1:{port}/ws/transcribe"
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    with tempfile.TemporaryFile(mode="w+") as log:
        server = subprocess.Popen(
            command, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        profiler: subprocess.Popen[bytes] | None = None
        try:
            while True:
                if server.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"server exited:\n{log.read()}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            print(f"server idle RSS {rss_mib(server.pid):.0f} MiB")
            unit = "s" if whisper else "ms"
            header = (
                f"{'N':>5} {'srv CPU ms/audio s/stream':>26} {'srv CPU %':>9} {'loop %':>6}"
                f" {'gen CPU %':>9}"
                f" {'p50 ' + unit:>7} {'p90 ' + unit:>7} {'p99 ' + unit:>7} {'errors':>6}"
                f" {'max lag ms':>10} {'RSS MiB':>7}"
            )
            print(header)
            best = best_added = 0
            single: float | None = None  # p50 overhead of the first (smallest) level
            for n in args.levels:
                procs = max(1, math.ceil(n / args.clients_per_process))
                shares = [n // procs + (i < n % procs) for i in range(procs)]
                if whisper:  # client i streams stream i
                    firsts = [sum(shares[:i]) for i in range(procs)]
                    work = [streams[f : f + share] for f, share in zip(firsts, shares, strict=True)]
                else:
                    work = [streams] * procs
                if args.profile and args.profile_level in (None, n):
                    profiler = subprocess.Popen(
                        [
                            *(str(Path(sys.executable).parent / "py-spy"), "record"),
                            *("--pid", str(server.pid), "--format", "raw", "--threads"),
                            *("--output", profile_path(args.profile, n, args.profile_level)),
                            *("--rate", "50", "--nonblocking"),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                counts_before = engine_counts(port)
                cpu_before = cpu_seconds(server.pid)
                loop_before = thread_cpu_seconds(server.pid)[server.pid]
                wall = time.monotonic()
                with multiprocessing.get_context("fork").Pool(procs) as pool:
                    outcome = pool.map(
                        generator,
                        [
                            (url, share, mine, args.stagger, seed)
                            for seed, (share, mine) in enumerate(zip(shares, work, strict=True))
                        ],
                    )
                wall = time.monotonic() - wall
                server_cpu = cpu_seconds(server.pid) - cpu_before
                loop_cpu = thread_cpu_seconds(server.pid)[server.pid] - loop_before
                if profiler is not None:
                    profiler.send_signal(2)  # SIGINT: py-spy writes its output and exits
                    profiler.wait(60)
                    profiler = None
                gen_cpu = sum(cpu for cpu, _ in outcome)
                results = [r for _, rs in outcome for r in rs]
                scale = 1.0 if whisper else 1000.0
                overheads = [scale * (x - LARGE_GAP) for r in results for x in r.latencies]
                errors = sum(len(r.errors) + (r.failure is not None) for r in results) + sum(
                    r.expected_finals - r.finals for r in results if r.failure is None
                )
                p90, p99 = percentile(overheads, 90), percentile(overheads, 99)
                single = percentile(overheads, 50) if single is None else single
                if whisper:
                    if errors == 0 and p90 <= args.bound:
                        best = max(best, n)
                else:
                    if errors == 0 and p99 < 100:
                        best = max(best, n)
                    if errors == 0 and p99 - single < 100:
                        best_added = max(best_added, n)
                digits = 2 if whisper else 0
                print(
                    f"{n:>5} {1000 * server_cpu / (n * audio_s):>26.2f}"
                    f" {100 * server_cpu / wall:>9.0f} {100 * loop_cpu / wall:>6.0f}"
                    f" {100 * gen_cpu / wall:>9.0f}"
                    f" {percentile(overheads, 50):>7.{digits}f} {p90:>7.{digits}f}"
                    f" {p99:>7.{digits}f} {errors:>6}"
                    f" {1000 * max(r.max_lag for r in results):>10.0f}"
                    f" {rss_mib(server.pid):>7.0f}",
                    flush=True,
                )
                for failure in {r.failure for r in results if r.failure}:
                    print(f"      failure: {failure}")
                if whisper:
                    extra = sum(r.extra_finals for r in results)
                    print(
                        f"      engine: {engine_summary(counts_before, engine_counts(port))}; "
                        f"finals inside a turn or in its silence: {extra}"
                    )
                time.sleep(2)
            if whisper:
                print(
                    f"largest N with zero errors and final p90 within {args.bound:g} s of the "
                    f"end-of-turn gap: {best or 'none'}"
                )
                return
            print(f"largest N with zero errors and p99 overhead < 100 ms: {best or 'none'}")
            # Even one stream waits for Silero's probability to fall after the last word (and
            # for the 32 ms window to fill): that is the VAD, not load.
            print(
                f"largest N with zero errors and p99 < 100 ms above the first level's median "
                f"({single or 0:.0f} ms): {best_added or 'none'}"
            )
        finally:
            if profiler is not None:
                profiler.kill()
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
