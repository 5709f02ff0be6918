"""The Conformer block and its parts, named as NeMo names them (`conformer_modules.py`)."""

from __future__ import annotations

from torch import Tensor, nn

from nemo_lite.config import EncoderConfig
from nemo_lite.conformer_lite.attention import RelPositionMultiHeadAttention

FC_FACTOR = 0.5  # each macaron feed-forward adds half its output


class ConformerFeedForward(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        d_ff = config.d_model * config.ff_expansion_factor
        self.linear1 = nn.Linear(config.d_model, d_ff)
        self.activation = nn.SiLU()
        self.linear2 = nn.Linear(d_ff, config.d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.activation(self.linear1(x)))


class ConformerConvolution(nn.Module):
    """pointwise (d -> 2d) -> GLU -> depthwise (k) -> BatchNorm -> Swish -> pointwise (d -> d)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        d_model, kernel_size = config.d_model, config.conv_kernel_size
        self.pointwise_conv1 = nn.Conv1d(d_model, 2 * d_model, 1)
        self.depthwise_conv = nn.Conv1d(
            d_model, d_model, kernel_size, padding=(kernel_size - 1) // 2, groups=d_model
        )
        self.batch_norm = nn.BatchNorm1d(d_model)
        self.activation = nn.SiLU()
        self.pointwise_conv2 = nn.Conv1d(d_model, d_model, 1)

    def forward(self, x: Tensor, pad_mask: Tensor | None) -> Tensor:
        """x (B, T, d); pad_mask (B, T), True at padding (zeroed before the depthwise conv)."""
        h = nn.functional.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)  # (B, d, T)
        if pad_mask is not None:
            h = h.masked_fill(pad_mask.unsqueeze(1), 0.0)
        h = self.activation(self.batch_norm(self.depthwise_conv(h)))
        return self.pointwise_conv2(h).transpose(1, 2)


class ConformerLayer(nn.Module):
    """Macaron block: ½ FF, self-attention, convolution, ½ FF, each pre-normed; then `norm_out`."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        d_model = config.d_model
        self.norm_feed_forward1 = nn.LayerNorm(d_model)
        self.feed_forward1 = ConformerFeedForward(config)
        self.norm_self_att = nn.LayerNorm(d_model)
        self.self_attn = RelPositionMultiHeadAttention(config)
        self.norm_conv = nn.LayerNorm(d_model)
        self.conv = ConformerConvolution(config)
        self.norm_feed_forward2 = nn.LayerNorm(d_model)
        self.feed_forward2 = ConformerFeedForward(config)
        self.norm_out = nn.LayerNorm(d_model)

    def forward(
        self, x: Tensor, att_mask: Tensor | None, pos_emb: Tensor, pad_mask: Tensor | None
    ) -> Tensor:
        x = x + FC_FACTOR * self.feed_forward1(self.norm_feed_forward1(x))
        x = x + self.self_attn(self.norm_self_att(x), pos_emb, att_mask)
        x = x + self.conv(self.norm_conv(x), pad_mask)
        x = x + FC_FACTOR * self.feed_forward2(self.norm_feed_forward2(x))
        return self.norm_out(x)
