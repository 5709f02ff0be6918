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
(cd strops-rs && PYO3_USE_ABI3_FORWARD_COMPATIBILITY=1 cargo test --quiet --no-default-features)
echo "== pytest"
python -m pytest "$@"
