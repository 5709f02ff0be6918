#!/usr/bin/env bash
# `make bench`: the benchmarks that fit a 2-core CPU machine in about ten minutes, with short
# settings. Each prints its own table; BENCHMARKS.md says how to run the long versions.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 PYTHONPATH="$PWD"

run() {
    echo "== $*"
    python "$@"
}
run benchmarks/bench_strops.py
run benchmarks/bench_vad.py --seconds 5 --sessions 1 10 50
run benchmarks/bench_streaming_wer.py --fast
run benchmarks/bench_server_capacity.py --levels 1 50 --seconds 10
run benchmarks/bench_ttfs.py --limit 5 --settings baseline flush300
run benchmarks/bench_whisper_batch.py --sizes 1 4 --clips 4 --repeats 1
