"""FastConformer encoder with NeMo's `ConformerEncoder` parameter names and constructor keywords."""

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

    def __init__(
        self,
        *,
        feat_in: int,
        n_layers: int,
        d_model: int,
        n_heads: int = 8,
        ff_expansion_factor: int = 4,
        conv_kernel_size: int = 9,
        subsampling_factor: int = 8,
        subsampling_conv_channels: int = 256,
        pos_emb_max_len: int = 5000,
        xscaling: bool = True,
        untie_biases: bool = True,
    ) -> None:
        super().__init__()
        if not untie_biases:
            raise ValueError("only untie_biases=True (per-layer pos_bias_u/v) is supported")
        channels = subsampling_conv_channels if subsampling_conv_channels > 0 else d_model
        self.d_model = d_model
        self.pos_emb_max_len = (
            pos_emb_max_len  # NeMo grows its table past this; so do we (no table)
        )
        self.pre_encode = ConvSubsampling(subsampling_factor, feat_in, d_model, channels)
        self.pos_enc = RelPositionalEncoding(d_model, xscaling)
        self.layers = nn.ModuleList(
            ConformerLayer(d_model, d_model * ff_expansion_factor, n_heads, conv_kernel_size)
            for _ in range(n_layers)
        )

    @classmethod
    def from_config(cls, config: EncoderConfig) -> FastConformerEncoder:
        if config.subsampling != "dw_striding" or config.self_attention_model != "rel_pos":
            raise ValueError(
                "only subsampling=dw_striding with self_attention_model=rel_pos is supported"
            )
        if config.conv_norm_type != "batch_norm" or config.feat_out not in (-1, config.d_model):
            raise ValueError("only conv_norm_type=batch_norm and feat_out=-1 are supported")
        return cls(
            feat_in=config.feat_in,
            n_layers=config.n_layers,
            d_model=config.d_model,
            n_heads=config.n_heads,
            ff_expansion_factor=config.ff_expansion_factor,
            conv_kernel_size=config.conv_kernel_size,
            subsampling_factor=config.subsampling_factor,
            subsampling_conv_channels=config.subsampling_conv_channels,
            pos_emb_max_len=config.pos_emb_max_len,
            xscaling=config.xscaling,
            untie_biases=config.untie_biases,
        )

    def forward(self, mel: Tensor, mel_len: Tensor) -> tuple[Tensor, Tensor]:
        x, lengths = self.pre_encode(mel.transpose(1, 2), mel_len)
        x, pos_emb = self.pos_enc(x)
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]  # (B, T')
        att_mask = ~(valid[:, None, :] & valid[:, :, None])  # (B, T', T'), True = blocked
        pad_mask = ~valid
        for layer in self.layers:
            x = layer(x, att_mask, pos_emb, pad_mask)
        return x, lengths
