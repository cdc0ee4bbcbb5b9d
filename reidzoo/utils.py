"""Small utilities shared by the command line and the benchmarks."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ['count_gflops']


def count_gflops(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """GFLOPs of one forward pass in eval mode (``torch.utils.flop_counter``; one multiply-add = 2 FLOPs)."""
    ref = next(model.parameters())
    x = torch.zeros(input_shape, dtype=ref.dtype, device=ref.device)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 1e9
