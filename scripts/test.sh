#!/usr/bin/env bash
# Every check the project has: lint, format, types, Rust tests, Python tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export HF_HUB_OFFLINE=1

echo "== ruff"
ruff check .
ruff format --check .
echo "== basedpyright"
basedpyright
echo "== cargo test (strops)"
(
    cd strops-rs
    if cargo clippy --version >/dev/null 2>&1 && cargo fmt --version >/dev/null 2>&1; then
        cargo fmt --check
        PYO3_PYTHON="$PWD/../.venv/bin/python" cargo clippy --quiet --all-targets --features python -- -D warnings
    else
        echo "note: rustfmt/clippy not installed with this Rust toolchain; Rust lint not run"
    fi
    cargo test --quiet
)
echo "== pytest"
python -m pytest "$@"
