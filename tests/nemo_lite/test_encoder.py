"""FastConformer encoder: NeMo's names, config checks, shapes, lengths, padding invariance."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nemo_lite import FastConformerEncoder
from nemo_lite.config import EncoderConfig
from nemo_lite.conformer_lite.modules import ConformerLayer


def _encoder(xscaling: bool = True) -> FastConformerEncoder:
    torch.manual_seed(0)
    config = EncoderConfig(
        feat_in=128,
        n_layers=2,
        d_model=16,
        n_heads=2,
        subsampling_conv_channels=4,
        xscaling=xscaling,
    )
    encoder = FastConformerEncoder(config)
    with torch.no_grad():
        for layer in encoder.layers:
            assert isinstance(layer, ConformerLayer)
            layer.self_attn.pos_bias_u.normal_()
            layer.self_attn.pos_bias_v.normal_()
            norm = layer.conv.batch_norm
            assert norm.running_mean is not None
            assert norm.running_var is not None
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 1.5)
    return encoder.eval()


def test_state_dict_uses_nemo_names() -> None:
    state = _encoder().state_dict()
    for key in (
        "pre_encode.conv.0.weight",
        "pre_encode.conv.6.bias",
        "pre_encode.out.weight",
        "layers.1.self_attn.linear_pos.weight",
        "layers.1.self_attn.pos_bias_u",
        "layers.1.conv.batch_norm.running_mean",
        "layers.1.conv.batch_norm.num_batches_tracked",
        "layers.1.norm_out.bias",
    ):
        assert key in state
    assert "layers.1.self_attn.linear_pos.bias" not in state
    assert state["layers.0.conv.depthwise_conv.weight"].shape == (16, 1, 9)
    assert state["layers.0.self_attn.pos_bias_v"].shape == (2, 8)
    # A state dict of the same naming loads strictly into a fresh encoder.
    _encoder().load_state_dict(state, strict=True)


def test_shapes_lengths_and_padding_invariance() -> None:
    encoder = _encoder()
    torch.manual_seed(1)
    mel = torch.randn(2, 128, 120)
    mel[1, :, 70:] = 0.0  # the preprocessor zeroes frames past a clip's length
    with torch.no_grad():
        out, out_len = encoder(mel, torch.tensor([120, 70]))
        alone, alone_len = encoder(mel[1:, :, :70], torch.tensor([70]))
    assert out.shape == (2, 15, 16)
    assert out_len.tolist() == [15, 9]
    assert alone_len.tolist() == [9]
    torch.testing.assert_close(out[1, :9], alone[0], atol=1e-5, rtol=0)


def test_xscaling_changes_the_output() -> None:
    mel = torch.randn(1, 128, 40)
    lengths = torch.tensor([40])
    scaled = _encoder(xscaling=True)
    plain = _encoder(xscaling=False)
    plain.load_state_dict(scaled.state_dict(), strict=True)
    with torch.no_grad():
        assert not torch.allclose(scaled(mel, lengths)[0], plain(mel, lengths)[0])


def test_rejects_unsupported_configurations() -> None:
    for change, message in (
        ({"subsampling": "striding"}, "dw_striding"),
        ({"self_attention_model": "abs_pos"}, "rel_pos"),
        ({"conv_norm_type": "layer_norm"}, "batch_norm"),
        ({"untie_biases": False}, "untie_biases"),
        ({"subsampling_factor": 6}, "power of 2"),
        ({"d_model": 15}, "divisible"),
    ):
        config = EncoderConfig(feat_in=80, n_layers=1, d_model=16, n_heads=2)
        with pytest.raises(ValueError, match=message):
            FastConformerEncoder(dataclasses.replace(config, **change))
