"""Inference-only Canary-Qwen-2.5B (NeMo's SALM) in plain PyTorch + transformers + peft."""

from nemo_lite.conformer_lite import FastConformerEncoder
from nemo_lite.model import CanaryQwen
from nemo_lite.preprocessing import AudioPreprocessor
from nemo_lite.weights import CheckpointError, CheckpointNotFoundError

__all__ = [
    "AudioPreprocessor",
    "CanaryQwen",
    "CheckpointError",
    "CheckpointNotFoundError",
    "FastConformerEncoder",
]
