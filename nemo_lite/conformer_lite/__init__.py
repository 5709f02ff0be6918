"""FastConformer encoder in plain PyTorch, with NeMo's parameter names."""

from nemo_lite.conformer_lite.encoder import FastConformerEncoder

__all__ = ["FastConformerEncoder"]
