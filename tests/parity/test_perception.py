"""nemo_lite's AudioPerceptionModule against NeMo's (speechlm2), on one random state dict:
preprocessor -> FastConformer -> IdentityConnector -> Linear, at tiny and at full Canary size."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from nemo.collections.speechlm2.modules.perception import (
    AudioPerceptionModule as NemoPerception,
)
from omegaconf import OmegaConf

from nemo_lite.config import PerceptionConfig
from nemo_lite.perception import AudioPerceptionModule
from nemo_lite.presets import CANARY_QWEN_2_5B
from tests.parity.errors import compare
from tests.parity.random_weights import randomize_

# Float32 throughout. Measured worst: 0 for the mel features, ~4e-6 after 32 layers of width 1024
# and the projection (outputs of scale ~4); 1e-4 leaves room for other CPUs' kernels and is far
# below what a real discrepancy does (a wrong mask, frame count or scaling moves outputs by O(1)).
ATOL = 1e-4


def _perception_config(size: str) -> dict[str, Any]:
    config = copy.deepcopy(CANARY_QWEN_2_5B["perception"])
    if size == "tiny":
        config["encoder"].update(
            n_layers=2, d_model=32, n_heads=4, subsampling_conv_channels=16, conv_kernel_size=9
        )
        config["modality_adapter"]["d_model"] = 32
        config["output_dim"] = 48
    return config


def _audio(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    audio = 0.1 * torch.randn(len(lengths), max(lengths), generator=generator)
    t = torch.arange(max(lengths)) / 16000
    audio += 0.3 * torch.sin(2 * torch.pi * 180 * t) * torch.sin(2 * torch.pi * 2 * t)
    return audio, torch.tensor(lengths)


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_perception_matches_nemo(size: str) -> None:
    config = _perception_config(size)
    torch.manual_seed(0)
    nemo = randomize_(NemoPerception(OmegaConf.create(config)), seed=4).eval()
    # The checkpoint stores the mel buffers in bf16; load them so into both.
    state = nemo.state_dict()
    for key in ("preprocessor.featurizer.window", "preprocessor.featurizer.fb"):
        state[key] = state[key].to(torch.bfloat16).float()
    nemo.load_state_dict(state, strict=True)
    with torch.device("meta"):  # weights come from NeMo's state dict (assign keeps it strict)
        lite = AudioPerceptionModule(PerceptionConfig.from_dict(config))
    lite.load_state_dict(state, strict=True, assign=True)
    lite.eval()

    # Padded batch of unequal clips: 4 s, 2.5 s + a partial hop, 1 s.
    audio, audio_len = _audio([64000, 40123, 16000])
    with torch.no_grad():
        ref_mel, ref_mel_len = nemo.preprocessor(input_signal=audio, length=audio_len)
        ref_enc, ref_enc_len = nemo.encoder(audio_signal=ref_mel, length=ref_mel_len)
        ref, ref_len = nemo(input_signal=audio, input_signal_length=audio_len)
        mel, mel_len = lite.preprocessor(audio, audio_len)
        enc, enc_len = lite.encoder(mel, mel_len)
        out, out_len = lite(audio, audio_len)

    assert mel_len.tolist() == ref_mel_len.tolist()
    assert enc_len.tolist() == ref_enc_len.tolist() == out_len.tolist() == ref_len.tolist()
    valid = torch.arange(ref.shape[1])[None, :] < ref_len[:, None]
    results = [
        compare("mel", f"perception {size}", ref_mel, mel),
        compare("encoder", f"perception {size}", ref_enc.transpose(1, 2)[valid], enc[valid]),
        compare("perception", f"perception {size}", ref[valid], out[valid]),
    ]
    for result in results:
        assert result.max_abs < ATOL, result
