"""STMP: Refining Recurrent Unit + Spatial-Temporal clues Integration Module (Liu et al., AAAI 2019).

Paper: "Spatial and Temporal Mutual Promotion for Video-based Person Re-identification" (Liu et al., AAAI 2019).
Official code: github.com/yolomax/person-reid-lib
(``tasks/task_video/architecture.py``, ``lib/network/model_factory/inception_v3/``); the authors released no weights,
:func:`convert_official_state_dict` maps checkpoints saved by their code.

* An Inception-v3 (timm ``inception_v3``, whose names equal torchvision's) turns each 299x299 frame into Mixed_7c maps
  ``X_t`` of 2048x8x8.
* RRU refines them recurrently: ``S_t = (1 - Z) ⊙ S_{t-1} + Z ⊙ X_t`` with ``S_0 = X_0`` (paper Eq. 5); the update
  gate ``Z = sigmoid(Z_s ⊙ Z_c)`` comes from a 1x1 conv-BN-ReLU "transition layer" over the concatenated appearance
  and motion differences, a spatial attention (two FCs over the ``h·w`` positions of the channel-mean map) and a
  channel attention (an FC on the spatial mean).
* STIM: a 1x1x1 and a 3x3x3 Conv3d-BN-ReLU over the stacked ``S``, then the mean over time and space gives the
  256-d clip embedding ``f`` (Eq. 6).
* Training adds the part features (``S`` averaged over width and time: one 2048-d vector per map row, Eq. 9) for the
  part-level ranking loss, the classifier block on ``f`` and Inception's auxiliary classifier on the temporal mean of
  the Mixed_6e maps.

Where paper and code differ, this follows the code:

* the appearance difference fed to the gate is ``S_{t-1} - X_t`` (paper Eq. 1: ``X_t - S_{t-1}``);
  ``rru_gate_input='paper'`` selects the paper's sign;
* the classifier block uses LeakyReLU(0.1) (paper: ReLU).

The spatial attention is an FC over all map positions (in the code, a conv whose kernel is the 8x8 map), so a model is
built for one input size (``img_size``, 299x299 by default); it accepts clips of any length ``T`` (the authors embed
a whole tracklet as one sequence). The recurrence is sequential over ``T`` by definition; each step is batched.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ._backbone import stage_output_sizes
from ._base import ModelOutput, VideoReIDModel
from ._builder import build_model_with_cfg
from ._registry import register_model

__all__ = ['RefiningRecurrentUnit', 'STIM', 'STMPClassifier', 'STMPNet', 'convert_official_state_dict',
           'official_model_args']

# timm / torchvision Inception-v3 blocks in forward order, split where the auxiliary classifier branches off
_PREAUX = ('Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3', 'Pool1', 'Conv2d_3b_1x1', 'Conv2d_4a_3x3', 'Pool2',
           'Mixed_5b', 'Mixed_5c', 'Mixed_5d', 'Mixed_6a', 'Mixed_6b', 'Mixed_6c', 'Mixed_6d', 'Mixed_6e')
_POSTAUX = ('Mixed_7a', 'Mixed_7b', 'Mixed_7c')
# the blocks whose outputs forward_intermediates returns (timm's last four feature_info entries)
_INTERMEDIATES = ('Conv2d_4a_3x3', 'Mixed_5d', 'Mixed_6e', 'Mixed_7c')


class RefiningRecurrentUnit(nn.Module):
    """RRU (paper §"Refining Recurrent Unit"; the authors' ``FuseNet`` gate and recurrence).

    Args:
        in_chs: channels ``C`` of the frame maps (2048).
        feat_size: ``(h, w)`` of the frame maps (8x8 at 299x299): the spatial attention's FC spans all positions.
        transition_chs: channels of the transition layer (256).
        spatial_hidden: width of the spatial attention's first FC (128).
        gate_input: ``'code'`` feeds ``[S_{t-1} - X_t, X_t - X_{t-1}]`` to the gate as the authors' code;
            ``'paper'`` feeds ``[X_t - S_{t-1}, X_t - X_{t-1}]`` as Eq. 1.
    """

    def __init__(
            self,
            in_chs: int = 2048,
            feat_size: tuple[int, int] = (8, 8),
            transition_chs: int = 256,
            spatial_hidden: int = 128,
            gate_input: str = 'code',
    ):
        super().__init__()
        if gate_input not in ('code', 'paper'):
            raise ValueError(f"gate_input must be 'code' or 'paper', got {gate_input!r}.")
        self.gate_input = gate_input
        self.feat_size = tuple(feat_size)
        h, w = self.feat_size
        from timm.layers import ConvNormAct  # timm loads where a model is built: the registry stays timm-free
        # names and Sequential indices follow the authors' FuseNet so their checkpoints map by prefix
        self.reduce_dim_z = ConvNormAct(
            2 * in_chs, transition_chs, kernel_size=1, padding=0, norm_kwargs=dict(eps=1e-3))
        # Eq. 2 as in the code: the first FC is a conv whose kernel covers the whole map, the second a 1x1 conv
        self.s_atten_z = nn.Sequential(
            nn.Conv2d(1, spatial_hidden, kernel_size=(h, w), bias=False), nn.ReLU(),
            nn.Conv2d(spatial_hidden, h * w, kernel_size=1, bias=False))
        self.c_atten_z = nn.Sequential(  # Eq. 3
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(transition_chs, in_chs, kernel_size=1, bias=False))

    def update_gate(self, appearance: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """``Z = sigmoid(Z_s ⊙ Z_c)`` (Eq. 2-4) for ``(N, C, h, w)`` difference maps; returns ``(N, C, h, w)``."""
        z = self.reduce_dim_z(torch.cat((appearance, motion), dim=1))
        z_s = self.s_atten_z(z.mean(dim=1, keepdim=True)).view(z.shape[0], 1, *z.shape[2:])
        return torch.sigmoid(z_s * self.c_atten_z(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw maps ``X`` ``(B, T, C, h, w)`` -> refined maps ``S`` ``(B, T, C, h, w)``."""
        if tuple(x.shape[-2:]) != self.feat_size:
            raise ValueError(f'RRU was built for {self.feat_size[0]}x{self.feat_size[1]} maps, got input of shape '
                             f'{tuple(x.shape)}: build the model with the img_size you feed.')
        motion = x - torch.cat((x[:, :1], x[:, :-1]), dim=1)  # X_t - X_{t-1}, zero at t = 0
        s = x[:, 0]
        refined = []
        for t in range(x.shape[1]):  # the recurrence is sequential by definition; each step is batched over B
            appearance = s - x[:, t] if self.gate_input == 'code' else x[:, t] - s
            z = self.update_gate(appearance, motion[:, t])
            s = (1 - z) * s + z * x[:, t]
            refined.append(s)
        return torch.stack(refined, dim=1)


class STIM(nn.Module):
    """Spatial-Temporal clues Integration Module: 1x1x1 then 3x3x3 Conv3d-BN-ReLU, mean over ``T, h, w`` (Eq. 6)."""

    def __init__(self, in_chs: int = 2048, mid_chs: int = 256, out_chs: int = 256):
        super().__init__()
        self.out_features = out_chs
        self.t_info = nn.Sequential(
            nn.Conv3d(in_chs, mid_chs, kernel_size=1, bias=False), nn.BatchNorm3d(mid_chs), nn.ReLU(),
            nn.Conv3d(mid_chs, out_chs, kernel_size=3, padding=1, bias=False), nn.BatchNorm3d(out_chs), nn.ReLU())

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """Refined maps ``(B, T, C, h, w)`` -> clip embedding ``(B, out_chs)``."""
        return self.t_info(s.transpose(1, 2)).mean(dim=(2, 3, 4))

    def _apply(self, fn, recurse: bool = True):
        """Hand each 5-D Conv3d weight to ``fn`` as its 4-D ``(O, I, kT, kH*kW)`` view, then view it back.

        ``model.to(memory_format=torch.channels_last)`` (what the trainer and extraction do on CUDA) passes every
        4-D *and* 5-D tensor to ``Tensor.to(memory_format=channels_last)``, which refuses 5-D tensors, so STMP could
        not be moved at all. Through the 4-D view a device/dtype move is unchanged, and channels_last of the view is
        exactly channels_last_3d (NDHWC) of the 5-D weight, the layout cuDNN's 3-D convolutions want next to
        channels_last activations. Values, shapes and state-dict keys stay the same (so checkpoints, the
        converter and the numerics are untouched); overriding ``_apply`` rather than ``to`` keeps this working
        when STMP sits inside another module (DDP, a wrapper).
        """
        def safe(t: torch.Tensor) -> torch.Tensor:
            if t.dim() != 5:
                return fn(t)
            return fn(t.flatten(3)).unflatten(3, t.shape[3:])
        return super()._apply(safe, recurse)


class STMPClassifier(nn.Module):
    """The classifier block on ``f`` (FC-BN-LeakyReLU-Dropout-FC, Zhong et al. 2018) and the auxiliary classifier's
    last FC, kept together so that everything sized by ``num_classes`` lives under ``classifier.``.

    Initialised as the authors: block FC Kaiming (fan-out), BN weight N(1, 0.02), last FC N(0, 0.001), biases 0;
    the auxiliary FC keeps PyTorch's default init (the authors re-create it after Inception's own init).
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int = 512, aux_in_features: Optional[int] = 768,
                 drop_rate: float = 0.5):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.act = nn.LeakyReLU(0.1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(hidden, num_classes)
        self.aux_fc = nn.Linear(aux_in_features, num_classes) if aux_in_features else None
        nn.init.kaiming_normal_(self.fc1.weight, mode='fan_out')
        nn.init.zeros_(self.fc1.bias)
        nn.init.normal_(self.bn.weight, 1.0, 0.02)
        nn.init.zeros_(self.bn.bias)
        nn.init.normal_(self.fc.weight, std=0.001)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.act(self.bn(self.fc1(x)))))


class STMPNet(VideoReIDModel):
    """Inception-v3 frame maps -> RRU -> STIM: a 256-d clip embedding compared by cosine distance."""

    def __init__(
            self,
            backbone: str = 'inception_v3',
            num_classes: int = 0,
            num_frames: int = 8,
            img_size: tuple[int, int] = (299, 299),
            aux_logits: bool = True,
            rru_gate_input: str = 'code',
            embed_dim: int = 256,
            frame_chunk: Optional[int] = 64,
            pretrained_backbone: bool = False,
            **backbone_kwargs: Any,
    ):
        """
        Args:
            backbone: timm Inception-v3 name (``inception_v3``, ``inception_v3.tv_in1k``, the authors' init).
            num_classes: identity classes of the classifier block and the auxiliary classifier (0: none).
            num_frames: clip length used in training (8); the model takes any ``T``.
            img_size: input ``(H, W)``; fixes the RRU spatial attention (8x8 maps at 299x299).
            aux_logits: keep Inception's auxiliary classifier (needs Mixed_6e maps of at least 17x17, i.e. 299x299).
            rru_gate_input: ``'code'`` (authors' code, default) or ``'paper'`` sign of the RRU appearance difference.
            embed_dim: STIM output channels, the embedding size (256).
            frame_chunk: in eval, run the backbone on at most this many frames at a time (the authors' 64), so a
                whole tracklet can be embedded as one sequence; ``None``: all at once.
            pretrained_backbone: start from timm's ImageNet weights (for training).
        """
        super().__init__()
        self.num_frames = num_frames
        self.img_size = tuple(img_size)
        self.fixed_input_size = self.img_size
        self.frame_chunk = frame_chunk
        self.global_pool = 'stim'
        self.aux_logits = aux_logits
        import timm  # see above: imported where the trunk is built
        self.backbone = timm.create_model(backbone, pretrained=pretrained_backbone, aux_logits=aux_logits,
                                          **backbone_kwargs)
        try:
            sizes = stage_output_sizes(self.backbone, self.img_size)
        except ValueError as e:
            raise ValueError(f'img_size {self.img_size} is too small for Inception-v3 (needs at least 75x75): {e}') \
                from None
        (h6, w6), (h, w) = sizes[2], sizes[3]  # Mixed_6e, Mixed_7c
        if aux_logits and min(h6, w6) < 17:
            raise ValueError(
                f'The auxiliary classifier needs Mixed_6e maps of at least 17x17, img_size {self.img_size} gives '
                f'{h6}x{w6}: use img_size=(299, 299) or aux_logits=False.')
        self.feat_size = (h, w)
        self.backbone.reset_classifier(0, '')
        if aux_logits:
            # the aux head's last FC is sized by num_classes: it lives in the classifier (see STMPClassifier)
            self.backbone.AuxLogits.fc = nn.Identity()
        in_chs = self.backbone.num_features
        self.rru = RefiningRecurrentUnit(in_chs, self.feat_size, gate_input=rru_gate_input)
        self.stim = STIM(in_chs, out_chs=embed_dim)
        self.num_features = self.head_hidden_size = self.stim.out_features
        self.num_classes = num_classes
        self.classifier = self._make_classifier(num_classes)

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        return STMPClassifier(self.num_features, num_classes, aux_in_features=768 if self.aux_logits else None)

    def _run_blocks(self, x: torch.Tensor, names: tuple[str, ...],
                    intermediates: Optional[dict[str, torch.Tensor]] = None) -> torch.Tensor:
        """Inception blocks ``names`` in order (Inception's own forward_preaux / forward_postaux, block by block so
        that gradient checkpointing can recompute one block at a time)."""
        for name in names:
            block = getattr(self.backbone, name)
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
            if intermediates is not None and name in _INTERMEDIATES:
                intermediates[name] = x
        return x

    def _backbone_frames(self, x: torch.Tensor, intermediates: Optional[dict[str, torch.Tensor]] = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B*T, 3, H, W)`` -> (Mixed_6e maps, Mixed_7c maps)."""
        pre = self._run_blocks(x, _PREAUX, intermediates)
        return pre, self._run_blocks(pre, _POSTAUX, intermediates)

    def forward_features(self, x: torch.Tensor, intermediates: Optional[list[torch.Tensor]] = None) -> torch.Tensor:
        """``(B, T, 3, H, W)`` -> Mixed_7c maps ``(B, T, 2048, h, w)``."""
        b, t = x.shape[:2]
        frames = x.flatten(0, 1)
        # chunking depends on the number of frames, so a traced graph (torch.export / ONNX with a dynamic batch,
        # torch.compile) runs all frames at once instead of specialising on the batch size
        if (self.training or not self.frame_chunk or intermediates is not None or torch.compiler.is_compiling()
                or frames.shape[0] <= self.frame_chunk):
            named: Optional[dict[str, torch.Tensor]] = {} if intermediates is not None else None
            maps = self._backbone_frames(frames, named)[1]
            if intermediates is not None:
                intermediates.extend(named[n].unflatten(0, (b, t)) for n in _INTERMEDIATES)
        else:  # eval BN is per-frame, so chunking the frames changes nothing but peak memory
            maps = torch.cat([self._backbone_frames(c)[1] for c in frames.split(self.frame_chunk)])
        return maps.unflatten(0, (b, t))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Mixed_7c maps ``(B, T, C, h, w)`` -> embedding ``f`` ``(B, 256)`` or identity logits."""
        f = self.stim(self.rru(x))
        return f if pre_logits else self.classifier(f)

    def forward_train(self, x: torch.Tensor) -> ModelOutput:
        b, t = x.shape[:2]
        pre, maps = self._backbone_frames(x.flatten(0, 1))
        refined = self.rru(maps.unflatten(0, (b, t)))
        embedding = self.stim(refined)
        # Eq. 9: one C-dim vector per map row, averaged over width and time
        aux = {'part_features': refined.mean(dim=-1).mean(dim=1)}
        logits = None
        if self.num_classes > 0:
            logits = self.classifier(embedding)
            if self.aux_logits:
                aux_feat = self.backbone.AuxLogits(pre.unflatten(0, (b, t)).mean(dim=1))
                aux['aux_logits'] = self.classifier.aux_fc(aux_feat)
        return ModelOutput(logits=logits, embedding=embedding, aux=aux)


def convert_official_state_dict(
        state_dict: dict[str, torch.Tensor],
        arch: Optional[str] = 'stmp_inception_v3',
        aux_logits: bool = True,
        **kwargs: Any,
) -> dict[str, torch.Tensor]:
    """Rename a state dict saved by the authors' code (``output/model/model.pkl``) to this module's keys.

    Their file is ``DataParallel(model).state_dict()`` plus a duplicate of the backbone that their code attaches to the
    wrapper: 608 keys under ``module.`` and the same backbone tensors again under ``feature.module.feature.``. The
    ``module.`` set is taken (an unwrapped state dict is accepted too) and the duplicate ignored.

    ``feature.feature.*`` -> ``backbone.*`` (torchvision Inception3 names = timm ``inception_v3``), its
    ``AuxLogits.fc`` -> ``classifier.aux_fc``; ``fuse_net.{reduce_dim_z,s_atten_z,c_atten_z}`` -> ``rru.*``;
    ``fuse_net.t_info`` -> ``stim.t_info``; ``classifier.0.{0,1}`` -> ``classifier.{fc1,bn}``; ``classifier.1.0`` ->
    ``classifier.fc``.

    Args:
        state_dict: the authors' state dict.
        arch: ``'stmp_inception_v3'`` (only one architecture).
        aux_logits: ``False`` drops the auxiliary classifier (for a model built with ``aux_logits=False``).
    """
    if arch not in (None, 'stmp_inception_v3'):
        raise ValueError(f'Unknown STMP architecture {arch!r}: only stmp_inception_v3.')
    wrapped = any(k.startswith('module.') for k in state_dict)
    renames = (
        ('feature.feature.AuxLogits.fc.', 'classifier.aux_fc.'),
        ('feature.feature.', 'backbone.'),
        ('fuse_net.t_info.', 'stim.t_info.'),
        ('fuse_net.', 'rru.'),
        ('classifier.0.0.', 'classifier.fc1.'),
        ('classifier.0.1.', 'classifier.bn.'),
        ('classifier.1.0.', 'classifier.fc.'),
    )
    out = {}
    for orig, value in state_dict.items():
        if orig.startswith('feature.module.'):
            continue  # the wrapper's duplicate backbone
        key = orig[len('module.'):] if wrapped and orig.startswith('module.') else orig
        for old, new in renames:
            if key.startswith(old):
                break
        else:
            raise KeyError(f'Unexpected key {orig!r} in the STMP checkpoint (expected module.feature.feature.*, '
                           f'module.fuse_net.* or module.classifier.*).')
        new_key = new + key[len(old):]
        if not aux_logits and (new_key.startswith('backbone.AuxLogits.') or new_key.startswith('classifier.aux_fc.')):
            continue
        out[new_key] = value
    return out


def official_model_args(state_dict: dict[str, torch.Tensor], arch: Optional[str] = None) -> tuple[str, dict]:
    """``(arch, model kwargs)`` for a *converted* state dict: ``num_classes`` from ``classifier.fc``, ``aux_logits``
    from the presence of the auxiliary head."""
    fc = state_dict.get('classifier.fc.weight')
    return arch or 'stmp_inception_v3', {
        'num_classes': int(fc.shape[0]) if fc is not None else 0,
        'aux_logits': any(k.startswith('backbone.AuxLogits.') for k in state_dict)}


def _create_stmp(variant: str, pretrained: bool = False, **kwargs) -> STMPNet:
    return build_model_with_cfg(STMPNet, variant, pretrained, **kwargs)


def _cfg(**kwargs) -> dict[str, Any]:
    return {
        'input_size': (3, 299, 299), 'num_frames': 8, 'mean': (0.5, 0.5, 0.5), 'std': (0.5, 0.5, 0.5),
        'interpolation': 'bicubic', 'test_sampling': 'all', 'distance': 'cosine',
        'first_conv': 'backbone.Conv2d_1a_3x3.conv', 'classifier': 'classifier', 'license': 'apache-2.0',
        'paper_name': 'Spatial and Temporal Mutual Promotion for Video-based Person Re-identification',
        'paper_ids': 'AAAI 2019',
        'origin_url': 'https://github.com/yolomax/person-reid-lib',
        **kwargs,
    }


default_cfgs = {
    'stmp_inception_v3': _cfg(),
}


@register_model
def stmp_inception_v3(pretrained: bool = False, **kwargs) -> STMPNet:
    """Inception-v3 + RRU + STIM at 299x299, 256-d embedding (authors' ``ModelClient`` for video datasets)."""
    model_args = dict(backbone='inception_v3')
    return _create_stmp('stmp_inception_v3', pretrained, **dict(model_args, **kwargs))
