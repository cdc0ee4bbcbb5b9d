"""``reidzoo info NAME``: an architecture's cfg, parameters, GFLOPs and published tags."""
from __future__ import annotations

import argparse
import json

from ..models import create_model, split_model_name_tag
from ..models._registry import get_pretrained_tags
from ..spec.model_cfg import resolve_model_cfg
from ..utils import count_gflops


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('name', help='architecture or arch.tag')
    parser.add_argument('--model-kwargs', default='{}',
                        help='JSON dict of architecture arguments, e.g. \'{"backbone": "resnet18"}\' (default: {})')
    parser.add_argument('--no-flops', action='store_true', help='skip the GFLOPs count (default: count)')


def run(args: argparse.Namespace) -> int:
    model = create_model(args.name, **json.loads(args.model_kwargs))
    cfg = dict(model.pretrained_cfg)
    arch, _ = split_model_name_tag(args.name)
    params = sum(p.numel() for p in model.parameters())
    print(f'architecture: {arch}')
    print(f'class:        {type(model).__module__}.{type(model).__name__}')
    print(f'parameters:   {params / 1e6:.2f} M (num_classes={model.num_classes})')
    print(f'embedding:    {model.num_features}-d')
    data = resolve_model_cfg(model)  # the frame size and clip length the built model takes
    c, h, w = data.input_size
    t = data.num_frames
    if not args.no_flops:
        print(f'GFLOPs:       {count_gflops(model, (1, t, c, h, w)):.2f} per clip of {t}x{c}x{h}x{w}')
    tags = get_pretrained_tags(arch)
    print(f'pretrained:   {", ".join(f"{arch}.{t}" for t in tags) or "none published"}')
    print('pretrained_cfg:')
    for k in sorted(cfg):
        print(f'  {k}: {cfg[k]}')
    return 0
