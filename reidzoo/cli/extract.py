"""``reidzoo extract MODEL TRACKLET_DIR... --out FILE``: embed your own tracklets (one folder of frames each)."""
from __future__ import annotations

import argparse
import json

from ..eval.extract import extract
from ..models import create_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('model', help="arch.tag, hf-hub:org/repo@rev or local-dir:/path")
    parser.add_argument('tracklet_dirs', nargs='+', help='folders of frames, one tracklet each')
    parser.add_argument('--out', required=True, help='output .safetensors or .npy')
    parser.add_argument('--no-pretrained', action='store_true',
                        help='random weights, for testing the pipeline (default: load the named weights)')
    parser.add_argument('--model-kwargs', default='{}', help='JSON dict of architecture arguments (default: {})')
    parser.add_argument('--batch-size', type=int, default=32, help='clips per forward pass (default: 32)')
    parser.add_argument('--device', default=None, help='torch device (default: cuda if available, else cpu)')
    parser.add_argument('--test-sampling', default=None, help="override the model's test sampling (default: its cfg)")
    parser.add_argument('--workers', type=int, default=0, help='data-loading worker processes (default: 0)')


def run(args: argparse.Namespace) -> int:
    model = create_model(args.model, pretrained=not args.no_pretrained, **json.loads(args.model_kwargs))
    out = extract(model, args.tracklet_dirs, args.out, batch_size=args.batch_size, device=args.device,
                  test_sampling=args.test_sampling, num_workers=args.workers)
    print(f'wrote {len(args.tracklet_dirs)} embeddings to {out}')
    return 0
