"""nemo_lite.AudioPreprocessor against NeMo's AudioToMelSpectrogramPreprocessor (eval mode)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from nemo.collections.asr.modules import AudioToMelSpectrogramPreprocessor

from nemo_lite import AudioPreprocessor
from nemo_lite.config import PreprocessorConfig
from nemo_lite.presets import CANARY_QWEN_2_5B
from tests.parity.errors import compare

# Float32 features made by the same torch.stft on the same samples: what is left is summation order
# in the filterbank product and the statistics; normalised features are O(1)..O(10).
ATOL = 1e-4

CANARY: dict[str, Any] = {
    k: v for k, v in CANARY_QWEN_2_5B["perception"]["preprocessor"].items() if k != "_target_"
}
CONFIGS: dict[str, dict[str, Any]] = {
    "canary": CANARY,
    "8k-40mel-nfft256": {
        **CANARY,
        "sample_rate": 8000,
        "window_size": 0.02,
        "window_stride": 0.01,
        "n_fft": 256,
        "features": 40,
    },
    "80mel-pad_to16": {**CANARY, "features": 80, "pad_to": 16},
}


def _pair(config: dict[str, Any]) -> tuple[AudioToMelSpectrogramPreprocessor, AudioPreprocessor]:
    nemo = AudioToMelSpectrogramPreprocessor(**config).eval()  # eval: no dither
    lite = AudioPreprocessor(PreprocessorConfig.from_dict(config)).eval()
    return nemo, lite


def _padded_batch(lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tones plus noise; the padding is noise too, which both sides must ignore."""
    generator = torch.Generator().manual_seed(seed)
    total = max(lengths)
    t = torch.arange(total) / 16000
    audio = 0.05 * torch.randn(len(lengths), total, generator=generator)
    for i, n in enumerate(lengths):
        f0 = 120.0 + 80.0 * i
        audio[i, :n] += 0.3 * torch.sin(2 * torch.pi * f0 * t[:n]) * (1 + torch.sin(6 * t[:n]))
    return audio, torch.tensor(lengths)


def _check(
    name: str,
    nemo: AudioToMelSpectrogramPreprocessor,
    lite: AudioPreprocessor,
    lengths: list[int],
    seed: int,
) -> None:
    audio, audio_len = _padded_batch(lengths, seed)
    with torch.no_grad():
        ref, ref_len = nemo(input_signal=audio, length=audio_len)
        got, got_len = lite(audio, audio_len)
    assert got_len.tolist() == ref_len.tolist()
    assert got.dtype == ref.dtype == torch.float32
    result = compare("mel", name, ref, got)  # padded frames included: pad_value on both sides
    assert result.max_abs < ATOL, result


@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_fresh_modules_agree(config_name: str) -> None:
    """Each side computes its own window and filterbank from the config."""
    nemo, lite = _pair(CONFIGS[config_name])
    torch.testing.assert_close(lite.featurizer.window, nemo.featurizer.window, atol=0, rtol=0)
    torch.testing.assert_close(lite.featurizer.fb, nemo.featurizer.fb, atol=1e-7, rtol=0)
    rate = CONFIGS[config_name]["sample_rate"]
    lengths = [2 * rate, 2 * rate - 1234, rate + 160, rate // 2 + 77]
    _check(f"{config_name} fresh", nemo, lite, lengths, seed=0)


@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_buffers_copied_from_nemo_agree(config_name: str) -> None:
    """NeMo's buffers rounded to bf16, as the real checkpoint stores them, loaded into both."""
    nemo, lite = _pair(CONFIGS[config_name])
    state = {k: v.to(torch.bfloat16).float() for k, v in nemo.state_dict().items()}
    nemo.load_state_dict(state, strict=True)
    lite.load_state_dict(copy.deepcopy(state), strict=True)
    rate = CONFIGS[config_name]["sample_rate"]
    lengths = [3 * rate + 99, 3 * rate // 2, 2 * rate, 4321]
    _check(f"{config_name} bf16 buffers", nemo, lite, lengths, seed=1)


def test_clips_of_one_and_no_valid_frame() -> None:
    """len < hop: no valid frame; hop <= len < 2 hop: one (std of one frame taken as 0)."""
    nemo, lite = _pair(CANARY)
    _check("canary 0/1-frame clips", nemo, lite, [16000, 159, 160, 319, 320], seed=2)
