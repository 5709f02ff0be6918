"""Silero VAD cost per stream: one ONNX call per session window vs one batched call per tick.

The server runs one Silero state per session. Called per session, every 32 ms window of every
stream is its own ONNX run; the network also takes a batch with a per-row state, so all sessions'
windows of one tick can go through one run. This prints CPU time per audio second per stream
both ways, for several session counts, and checks that both give the same probabilities.

    .venv/bin/python benchmarks/bench_vad.py [--seconds 10] [--sessions 1 10 50 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from stt_server.audio import SAMPLE_RATE
from stt_server.stages.silero import CONTEXT, STATE_SHAPE, WINDOW, SileroModel


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Noise bursts with pauses: the VAD's cost does not depend on the content."""
    rng = np.random.default_rng(seed)
    audio = rng.normal(0, 0.1, int(seconds * SAMPLE_RATE)).astype(np.float32)
    envelope = (np.sin(np.linspace(0, seconds * 2, audio.size)) > 0).astype(np.float32)
    return audio * envelope


def per_session(model: SileroModel, streams: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """The server before batching: one ONNX run per session window (a batch of one)."""
    windows = [s[: len(s) // WINDOW * WINDOW].reshape(-1, WINDOW) for s in streams]
    ticks = windows[0].shape[0]
    states = [np.zeros(STATE_SHAPE, np.float32) for _ in streams]
    contexts = [np.zeros(CONTEXT, np.float32) for _ in streams]
    rate = np.array(SAMPLE_RATE, dtype=np.int64)
    probs = np.zeros((len(streams), ticks), np.float32)
    start = time.process_time()
    for t in range(ticks):
        for i in range(len(streams)):
            x = np.concatenate([contexts[i], windows[i][t]])[None, :]
            out, state = model.session.run(None, {"input": x, "state": states[i], "sr": rate})
            states[i] = np.asarray(state, np.float32)
            contexts[i] = x[0, -CONTEXT:]
            probs[i, t] = float(np.asarray(out).reshape(-1)[0])
    return time.process_time() - start, probs


def batched(model: SileroModel, streams: list[np.ndarray]) -> tuple[float, np.ndarray]:
    n = len(streams)
    windows = np.stack([s[: len(s) // WINDOW * WINDOW].reshape(-1, WINDOW) for s in streams])
    ticks = windows.shape[1]
    state = np.zeros((2, n, 128), np.float32)
    context = np.zeros((n, CONTEXT), np.float32)
    rate = np.array(SAMPLE_RATE, dtype=np.int64)
    probs = np.zeros((n, ticks), np.float32)
    start = time.process_time()
    for t in range(ticks):
        x = np.concatenate([context, windows[:, t, :]], axis=1)
        out, state = model.session.run(None, {"input": x, "state": state, "sr": rate})
        context = x[:, -CONTEXT:]
        probs[:, t] = np.asarray(out).reshape(-1)
    return time.process_time() - start, probs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per stream")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 50, 200])
    args = parser.parse_args()
    model = SileroModel()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus; onnxruntime 1 thread")
    print(f"{'sessions':>8} {'per-session ms CPU/audio s':>27} {'batched':>10} {'ratio':>7}")
    for n in args.sessions:
        streams = [speechlike(args.seconds, seed) for seed in range(n)]
        t_each, p_each = per_session(model, streams)
        t_batch, p_batch = batched(model, streams)
        assert np.allclose(p_each, p_batch, atol=1e-4), np.abs(p_each - p_batch).max()
        audio_s = n * args.seconds
        each_ms = t_each / audio_s * 1e3
        batch_ms = t_batch / audio_s * 1e3
        print(f"{n:>8} {each_ms:>27.2f} {batch_ms:>10.2f} {each_ms / batch_ms:>6.1f}x")


if __name__ == "__main__":
    main()
