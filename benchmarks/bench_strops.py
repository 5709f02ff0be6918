"""Per-call time of strops merges at transcript sizes a streaming session sees.

Compares the Rust extension with a pure-Python implementation of the same DP, written here only
as a yardstick (the server never uses it). Both must agree on every case before timing.

    .venv/bin/python benchmarks/bench_strops.py
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Sequence

import strops


def align_overlap_py(
    prev: Sequence[str], new: Sequence[str], match: float = 3.0, gap: float = -1.0
) -> tuple[int, int] | None:
    """Reference: the same rolling-row DP with start propagation, in plain Python."""
    if not prev or not new:
        return None
    m = len(new)
    above: list[tuple[float, tuple[int, int] | None]] = [(0.0, None)] * (m + 1)
    for i, p in enumerate(prev):
        row: list[tuple[float, tuple[int, int] | None]] = [(0.0, None)] * (m + 1)
        for j, n in enumerate(new):
            d_score, d_start = above[j]
            is_match = p == n
            diag = d_score + (match if is_match else gap)
            up = above[j + 1][0] + gap
            left = row[j][0] + gap
            if diag > 0 and diag >= up and diag >= left:
                start = d_start if d_score > 0 else ((i, j) if is_match else None)
                row[j + 1] = (diag, start)
            elif up > 0 and up >= left:
                row[j + 1] = (up, above[j + 1][1])
            elif left > 0:
                row[j + 1] = (left, row[j][1])
        above = row
    best: tuple[float, tuple[int, int] | None] = (0.0, None)
    for cell in above[1:]:
        if cell[0] > best[0]:
            best = cell
    return best[1] if best[0] > 0 else None


def merge_by_overlap_py(prev: Sequence[str], new: Sequence[str]) -> list[str]:
    cut_prev, cut_new = align_overlap_py(prev, new) or (len(prev), 0)
    return [*prev[:cut_prev], *new[cut_new:]]


def make_case(rng: random.Random, prev_words: int, chunk_words: int) -> tuple[list[str], list[str]]:
    """A transcript so far and a new chunk whose first ~40% re-transcribes the transcript's tail
    (5 s of overlap), with one garbled word at the chunk's head, as the ASR stage produces."""
    vocab = [f"word{i}" for i in range(2000)]
    prev = [rng.choice(vocab) for _ in range(prev_words)]
    overlap = int(chunk_words * 0.4)
    new = prev[-overlap:] + [rng.choice(vocab) for _ in range(chunk_words - overlap)]
    new[0] = new[0][:2]
    return prev, new


def per_call_us(fn: Callable[[], object], min_seconds: float = 0.5) -> float:
    """Median per-call time over repeated batches, in microseconds."""
    calls = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - t0 > 0.05:
            break
        calls *= 2
    samples = []
    deadline = time.perf_counter() + min_seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(samples)


def main() -> None:
    rng = random.Random(0)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}"
    )
    print(f"{'transcript':>10} {'chunk':>6} {'rust us':>10} {'python us':>10} {'speed-up':>9}")
    for prev_words in (50, 500, 2000):
        prev, new = make_case(rng, prev_words, 30)
        assert strops.align_overlap(prev, new) == align_overlap_py(prev, new)
        assert strops.merge_by_overlap(prev, new) == merge_by_overlap_py(prev, new)
        rust = per_call_us(lambda p=prev, n=new: strops.merge_by_overlap(p, n))
        py = per_call_us(lambda p=prev, n=new: merge_by_overlap_py(p, n))
        print(f"{prev_words:>10} {30:>6} {rust:>10.1f} {py:>10.1f} {py / rust:>8.0f}x")


if __name__ == "__main__":
    main()
