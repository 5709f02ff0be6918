#!/usr/bin/env bash
# Canary-Qwen-2.5B on one GPU (sized for an H100), full-size random weights, nothing downloaded:
#   1. batches of 1, 8, 32 and 64 ten-second chunks: RTFx, tokens/s, peak GPU memory;
#   2. Poisson arrivals of 1-10 s chunks at rising rates, served by whole-batch generate and by
#      the step-level ContinuousDecoder: latency p50/p99 and throughput (audio seconds per
#      second); the rate whose p99 stays within 0.3 s gives the real-time streams per GPU.
# Both parts run benchmarks/bench_nemo_lite.py (bf16, SDPA, LoRA merged, as the engine serves);
# each has its own timeout, so the whole stays under 8 minutes.
#
#   benchmarks/gpu_canary.sh            # on the GPU machine
#   benchmarks/gpu_canary.sh --smoke    # the mid-size model on CPU with small sizes: checks it runs
#
# PYTHON picks the interpreter (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}

if [[ "${1:-}" == "--smoke" ]]; then
    common=(--device cpu --size mid --threads 1)
    batch=(--durations 2 --batch-sizes 1 2 --repeats 1)
    arrivals=(--rate 2 --requests 4 --max-batch 4)
    limits=(120 120)
else
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
        --format=csv,noheader
    common=(--device cuda --size full)
    batch=(--durations 10 --batch-sizes 1 8 32 64 --repeats 2)
    arrivals=(--rate 4 12 24 48 --trace-seconds 12 --max-batch 64)
    limits=(140 300)
fi

echo "## batches"
timeout "${limits[0]}" "$python" benchmarks/bench_nemo_lite.py "${common[@]}" "${batch[@]}"
echo
echo "## arrivals"
timeout "${limits[1]}" "$python" benchmarks/bench_nemo_lite.py "${common[@]}" --arrivals "${arrivals[@]}"
