"""``reidzoo extract MODEL TRACKLET_DIR... --out FILE``: embed your own tracklets (one folder of frames each).

    reidzoo extract sinet_resnet50.mars runs/cam1/track_0001 runs/cam1/track_0002 --out emb.safetensors
    reidzoo extract --onnx model.onnx runs/cam1/track_* --out emb.npy        # onnxruntime, no torch model

Each folder must hold the frames of one tracklet; a folder mixing several cameras' tracklets (a MARS ``bbox_test``
identity folder) is refused, as is a file.
"""
from __future__ import annotations

import argparse
import json
import os

from ..eval.extract import extract
from ..models import create_model
from .benchmark import non_negative_int, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('model', nargs='?', default=None,
                        help='arch.tag, hf-hub:org/repo@rev or local-dir:/path (omit it with --onnx)')
    parser.add_argument('tracklet_dirs', nargs='+', help='folders of frames, one tracklet each')
    parser.add_argument('--out', required=True, help='output .safetensors or .npy (required)')
    parser.add_argument('--onnx', default=None, metavar='FILE',
                        help='embed with this ONNX file (written by reidzoo.deploy.export_onnx) through onnxruntime '
                             'instead of a torch model; MODEL is then not needed (default: use MODEL)')
    parser.add_argument('--no-pretrained', action='store_true',
                        help='random weights, for testing the pipeline (default: load the named weights)')
    parser.add_argument('--model-kwargs', default='{}', help='JSON dict of architecture arguments (default: {})')
    parser.add_argument('--batch-size', type=positive_int, default=32, help='clips per forward pass (default: 32)')
    parser.add_argument('--device', default=None, help="torch device (default: the model's, i.e. cpu)")
    parser.add_argument('--test-sampling', default=None, help="override the model's test sampling (default: its cfg)")
    parser.add_argument('--workers', type=non_negative_int, default=0,
                        help='data-loading worker processes (default: 0)')


def run(args: argparse.Namespace) -> int:
    dirs = list(args.tracklet_dirs)
    if args.onnx:
        from ..deploy import OnnxEmbedder  # optional onnxruntime dependency
        if args.model is not None:
            if not os.path.isdir(args.model):
                raise ValueError(f'with --onnx the model is the ONNX file; {args.model!r} is neither needed nor a '
                                 'tracklet folder: drop it')
            dirs.insert(0, args.model)  # argparse gave the first tracklet folder to the optional MODEL
        model = OnnxEmbedder(args.onnx)
    else:
        if args.model is None:
            raise ValueError('name a MODEL (arch.tag, hf-hub:org/repo, local-dir:/path) or pass --onnx FILE')
        model = create_model(args.model, pretrained=not args.no_pretrained, **json.loads(args.model_kwargs))
    out = extract(model, dirs, args.out, batch_size=args.batch_size, device=args.device,
                  test_sampling=args.test_sampling, num_workers=args.workers)
    print(f'wrote {len(dirs)} embeddings to {out}')
    return 0
