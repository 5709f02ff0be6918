"""Audio side of the SALM: mel features -> FastConformer -> modality adapter -> projection.

Mirrors NeMo's `AudioPerceptionModule`: `proj` is a Linear only when the adapter config names a
`d_model` and no `output_dim` (Canary-Qwen: IdentityConnector, d_model 1024 -> Linear 1024->2048).
"""

from __future__ import annotations

from torch import Tensor, nn

from nemo_lite.config import PerceptionConfig
from nemo_lite.conformer_lite import FastConformerEncoder
from nemo_lite.preprocessing import AudioPreprocessor

IDENTITY_CONNECTOR = "IdentityConnector"


class AudioPerceptionModule(nn.Module):
    def __init__(self, config: PerceptionConfig) -> None:
        super().__init__()
        adapter = config.modality_adapter
        target = str(adapter.get("_target_", IDENTITY_CONNECTOR))
        if not target.endswith(IDENTITY_CONNECTOR):
            raise ValueError(f"unsupported modality adapter {target!r}: only IdentityConnector is")
        self.preprocessor = AudioPreprocessor(config.preprocessor)
        self.encoder = FastConformerEncoder(config.encoder)
        self.modality_adapter = nn.Identity()  # parameter-free pass-through
        if "d_model" in adapter and "output_dim" not in adapter:
            self.proj: nn.Module = nn.Linear(int(adapter["d_model"]), config.output_dim)
        else:
            self.proj = nn.Identity()

    def forward(self, audio: Tensor, audio_len: Tensor) -> tuple[Tensor, Tensor]:
        """audio (B, samples) float32 -> embeddings (B, T', output_dim) (model dtype), lengths."""
        mel, mel_len = self.preprocessor(audio, audio_len)
        dtype = self.encoder.pre_encode.out.weight.dtype
        encoded, encoded_len = self.encoder(mel.to(dtype), mel_len)
        return self.proj(self.modality_adapter(encoded)), encoded_len
