#!/usr/bin/env bash
# Parity of nemo_lite with NeMo itself: builds .venv-nemo (NeMo beside this project, CPU torch)
# on first use, then runs tests/parity, which prints a table of the errors measured.
# Extra arguments go to pytest, e.g. `bash scripts/parity.sh -k encoder`.
#
# NeMo is installed without its dependencies: `nemo-toolkit[asr]` would pull training-only
# packages and, through them, other torch builds. The list below is what importing
# nemo.collections.asr.modules and nemo.collections.speechlm2.modules.perception needs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
NEMO_VERSION=3.0.0
VENV="$root/.venv-nemo"

log() { printf '[parity] %s\n' "$*" >&2; }

nemo_deps=(
    "omegaconf<=2.3" "hydra-core>1.3,<=1.3.2" "lightning>2.2.1,<=2.4.0" torchmetrics
    onnx smart-open text-unidecode wrapt tqdm packaging einops scipy pandas sentencepiece
    "lhotse>=1.33.0" kaldialign braceexpand "webdataset>=0.2.86" datasets wandb sacrebleu
    whisper_normalizer "nv_one_logger_core>=2.3.1" "nv_one_logger_training_telemetry>=2.3.1"
    "nv_one_logger_pytorch_lightning_integration>=2.3.1"
)
# What nemo_lite imports (this project goes in with --no-deps), and the test runner.
lite_deps=(
    numpy librosa soundfile soxr safetensors transformers "peft<=0.18.0" huggingface_hub
    tokenizers pytest pytest-timeout pytest-asyncio
)

# shellcheck source=scripts/venv.sh
source scripts/venv.sh
venv_with_torch

deps_hash=$(printf '%s\n' "$NEMO_VERSION" "${nemo_deps[@]}" "${lite_deps[@]}" | sha256sum | cut -c1-16)
if [[ ! -f "$STAMPS/deps-$deps_hash" ]]; then
    # Hold torch at the installed build, and refuse torchaudio: a package that wants either
    # fails the install here instead of downloading gigabytes.
    constraints="$VENV/constraints.txt"
    "$VENV/bin/python" -c "import torch; print('torch==' + torch.__version__)" \
        >"$constraints" 2>/dev/null
    echo "torchaudio==0.0.0" >>"$constraints"
    log "installing what NeMo and nemo_lite import, then nemo-toolkit $NEMO_VERSION (no dependencies)"
    "${pip[@]}" install -c "$constraints" "${nemo_deps[@]}" "${lite_deps[@]}"
    "${pip[@]}" install --no-deps "nemo-toolkit==$NEMO_VERSION"
    rm -f "$STAMPS"/deps-*
    touch "$STAMPS/deps-$deps_hash"
fi

project_hash=$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f "$STAMPS/project-$project_hash" ]]; then
    log "installing stt-server (editable, no dependencies) for nemo_lite"
    "${pip[@]}" install --no-deps -e .
    rm -f "$STAMPS"/project-*
    touch "$STAMPS/project-$project_hash"
fi

# --confcutdir: tests/conftest.py serves the server tests and imports their dependencies;
# -o addopts: the main run's addopts leave tests/parity out.
export HF_HUB_OFFLINE=1
exec "$VENV/bin/python" -m pytest -o addopts="-ra --strict-markers" --confcutdir=tests/parity \
    tests/parity "$@"
