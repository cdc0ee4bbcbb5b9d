"""Temporal aggregation of per-frame feature maps (Gao & Nevatia, "Revisiting Temporal Modeling for Video-based
Person ReID", 2018), with the layer names of the COSAM authors' ``aggregation_layers.py`` so their checkpoints map
by prefix.

All take per-frame maps ``(B, T, C, h, w)`` and return a clip vector ``(B, D)``:

* :class:`TemporalAvgPool` (TP): spatial then temporal average, ``D = C``.  O(B·T·C·h·w).
* :class:`TemporalAttentionPool` (TA): a conv over the whole map (kernel = map size) and a temporal conv score each
  frame; softmax over T weights the spatially pooled frame vectors, ``D = C``.
* :class:`RNNPool` (RNN): an LSTM over the spatially pooled frame vectors, outputs averaged over T, ``D = hidden``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['TemporalAvgPool', 'TemporalAttentionPool', 'RNNPool', 'LSTMLayer', 'create_temporal_pool']


class TemporalAvgPool(nn.Module):
    """TP: mean over positions, then over frames."""

    def __init__(self, in_chs: int):
        super().__init__()
        self.out_features = in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1)).mean(dim=1)


class TemporalAttentionPool(nn.Module):
    """TA: ``a = softmax_T(ReLU(tconv(ReLU(conv(f_t)))))``, output ``sum_t a_t · GAP(f_t)``.

    Args:
        in_chs: channels of the frame maps.
        feat_size: ``(h, w)`` of the frame maps; the spatial conv's kernel covers the whole map (Gao & Nevatia use
            8x4 maps, a ResNet-50 with stride 32 at 256x128), so the module is tied to one input size.
        mid_chs: channels of the spatial conv (256 in the references).
    """

    def __init__(self, in_chs: int, feat_size: tuple[int, int] = (8, 4), mid_chs: int = 256):
        super().__init__()
        self.out_features = in_chs
        self.feat_size = tuple(feat_size)
        self.attention_conv = nn.Conv2d(in_chs, mid_chs, kernel_size=self.feat_size)
        self.attention_tconv = nn.Conv1d(mid_chs, 1, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        if (h, w) != self.feat_size:
            raise ValueError(f'TemporalAttentionPool was built for {self.feat_size[0]}x{self.feat_size[1]} maps, got '
                             f'{h}x{w} (input shape {tuple(x.shape)}): build the model with the img_size you feed.')
        # explicit sizes, not -1: an empty batch (B=0) must still reshape
        a = F.relu(self.attention_conv(x.flatten(0, 1))).view(b, t, self.attention_conv.out_channels).transpose(1, 2)
        a = F.softmax(F.relu(self.attention_tconv(a)).squeeze(1), dim=1)  # (B, T)
        return torch.einsum('bt,btc->bc', a, x.mean(dim=(-2, -1)))


class LSTMLayer(nn.Module):
    """One batch-first LSTM layer with ``nn.LSTM``'s parameters, names, init and numerics, minus the module type.

    ``forward`` calls the same ``torch.lstm`` kernel ``nn.LSTM`` calls (bit-identical outputs), but torch.compile
    refuses to trace ``nn.LSTM`` *modules* (a graph break per call, an error with ``fullgraph=True``) while it traces
    the op; torch.export and the ONNX exporter turn it into one ONNX ``LSTM`` node as before. State-dict keys stay
    ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        reference = nn.LSTM(input_size=input_size, hidden_size=hidden_size, num_layers=1, batch_first=True)
        for name, param in reference.named_parameters():  # nn.LSTM's own initialisation, same random draws
            self.register_parameter(name, param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, input_size)`` -> outputs at every step ``(B, T, hidden_size)`` (zero initial state)."""
        h0 = x.new_zeros(1, x.shape[0], self.hidden_size)
        weights = [self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0]
        out, _, _ = torch.lstm(x, (h0, h0), weights, True, 1, 0.0, self.training, False, True)
        return out


class RNNPool(nn.Module):
    """RNN: ``mean_t LSTM(GAP(f_1..f_T))``."""

    def __init__(self, in_chs: int, hidden_size: int = 512):
        super().__init__()
        self.out_features = hidden_size
        self.lstm = LSTMLayer(in_chs, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x.mean(dim=(-2, -1))).mean(dim=1)


def create_temporal_pool(kind: str, in_chs: int, feat_size: tuple[int, int], **kwargs) -> nn.Module:
    """``'tp'``, ``'ta'`` or ``'rnn'`` aggregation over ``in_chs``-channel maps of ``feat_size``."""
    if kind == 'tp':
        return TemporalAvgPool(in_chs)
    if kind == 'ta':
        return TemporalAttentionPool(in_chs, feat_size, **kwargs)
    if kind == 'rnn':
        return RNNPool(in_chs, **kwargs)
    raise ValueError(f'Unknown temporal aggregation {kind!r}: choose tp, ta or rnn.')
