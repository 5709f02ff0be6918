"""Random weights for NeMo modules: parity tested away from NeMo's constant initialisations."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Add Gaussian noise to every parameter, a tenth of its own spread or 0.1 for the
    constant-initialised ones (norms, pos_bias_u/v), and draw BatchNorm running statistics.
    Returns `module`.

    Mild on purpose: with noise as large as the weights themselves, float32 rounding grows ~10x per
    layer (NeMo's own float32 output then drifts from its float64 output as much as nemo_lite's
    does), so a 32-layer comparison would measure that chaos, not the implementation.
    """
    generator = torch.Generator().manual_seed(seed)
    for param in module.parameters():
        spread = float(param.std()) if param.numel() > 1 else 0.0
        noise = torch.randn(param.shape, generator=generator) * (0.1 * spread or 0.1)
        param.add_(noise.to(param.dtype))
    for name, buffer in module.named_buffers():
        if name.endswith("running_mean"):
            buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
        elif name.endswith("running_var"):
            buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
    return module
