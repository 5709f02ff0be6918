"""Frozen configuration records whose field names are those of the checkpoint's `config.json`.

Each record is built from the matching dict with `from_dict`, which keeps the fields it knows and
ignores the rest (NeMo configs carry training-only keys such as dropouts and `_target_`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Self


class _FromDict:
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}  # pyright: ignore[reportArgumentType]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass(frozen=True)
class PreprocessorConfig(_FromDict):
    """NeMo's `AudioToMelSpectrogramPreprocessor` arguments (Canary's values as defaults)."""

    sample_rate: int = 16000
    window_size: float = 0.025
    window_stride: float = 0.01
    n_fft: int = 512
    features: int = 128
    window: str = "hann"
    normalize: str = "per_feature"
    dither: float = 1e-5  # training only: inference never dithers
    pad_to: int = 0
    pad_value: float = 0.0
    preemph: float = 0.97
    log: bool = True
    log_zero_guard_value: float = 2**-24
    mag_power: float = 2.0
    lowfreq: float = 0.0
    highfreq: float | None = None
    frame_splicing: int = 1

    @property
    def win_length(self) -> int:
        return round(self.window_size * self.sample_rate)

    @property
    def hop_length(self) -> int:
        return round(self.window_stride * self.sample_rate)


@dataclasses.dataclass(frozen=True)
class EncoderConfig(_FromDict):
    """NeMo's `ConformerEncoder` arguments that shape the inference graph."""

    feat_in: int = 128
    n_layers: int = 32
    d_model: int = 1024
    n_heads: int = 8
    ff_expansion_factor: int = 4
    conv_kernel_size: int = 9
    subsampling: str = "dw_striding"
    subsampling_factor: int = 8
    subsampling_conv_channels: int = 256
    self_attention_model: str = "rel_pos"
    xscaling: bool = True
    untie_biases: bool = True
    conv_norm_type: str = "batch_norm"
    feat_out: int = -1


@dataclasses.dataclass(frozen=True)
class PerceptionConfig:
    preprocessor: PreprocessorConfig
    encoder: EncoderConfig
    modality_adapter: dict[str, Any]
    output_dim: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PerceptionConfig:
        return cls(
            preprocessor=PreprocessorConfig.from_dict(data.get("preprocessor", {})),
            encoder=EncoderConfig.from_dict(data["encoder"]),
            modality_adapter=dict(data.get("modality_adapter") or {}),
            output_dim=int(data["output_dim"]),
        )


@dataclasses.dataclass(frozen=True)
class CanaryQwenConfig:
    """The SALM `config.json` of `nvidia/canary-qwen-2.5b`, the parts inference reads."""

    pretrained_llm: str
    audio_locator_tag: str
    prompt_format: str
    lora: dict[str, Any]
    perception: PerceptionConfig

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CanaryQwenConfig:
        return cls(
            pretrained_llm=str(data["pretrained_llm"]),
            audio_locator_tag=str(data.get("audio_locator_tag", "<|audioplaceholder|>")),
            prompt_format=str(data.get("prompt_format", "qwen")),
            lora=dict(data.get("lora") or {}),
            perception=PerceptionConfig.from_dict(data["perception"]),
        )
