"""FastConformer encoder with NeMo's `ConformerEncoder` parameter names."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nemo_lite.config import EncoderConfig
from nemo_lite.conformer_lite.modules import ConformerLayer
from nemo_lite.conformer_lite.pos_encoding import RelPositionalEncoding
from nemo_lite.conformer_lite.subsampling import ConvSubsampling


class FastConformerEncoder(nn.Module):
    """`encoded, encoded_len = enc(mel, mel_len)`: mel (B, feat_in, T) -> encoded (B, T', d_model).

    Inference only (no dropout, full context). A NeMo `ConformerEncoder` state dict of the same
    configuration loads with `load_state_dict(strict=True)`.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        if config.subsampling != "dw_striding" or config.self_attention_model != "rel_pos":
            raise ValueError(
                "only subsampling=dw_striding with self_attention_model=rel_pos is supported"
            )
        if config.conv_norm_type != "batch_norm" or config.feat_out not in (-1, config.d_model):
            raise ValueError("only conv_norm_type=batch_norm and feat_out=-1 are supported")
        if not config.untie_biases:
            raise ValueError("only untie_biases=True (per-layer pos_bias_u/v) is supported")
        self.pre_encode = ConvSubsampling(config)
        self.pos_enc = RelPositionalEncoding(config)
        self.layers = nn.ModuleList(ConformerLayer(config) for _ in range(config.n_layers))

    def forward(self, mel: Tensor, mel_len: Tensor) -> tuple[Tensor, Tensor]:
        x, lengths = self.pre_encode(mel.transpose(1, 2), mel_len)
        x, pos_emb = self.pos_enc(x)
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]  # (B, T')
        att_mask = ~(valid[:, None, :] & valid[:, :, None])  # (B, T', T'), True = blocked
        pad_mask = ~valid
        for layer in self.layers:
            x = layer(x, att_mask, pos_emb, pad_mask)
        return x, lengths
