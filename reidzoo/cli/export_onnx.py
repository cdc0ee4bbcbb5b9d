"""``reidzoo export-onnx MODEL --out model.onnx``: an ONNX file verified with onnxruntime, its cfg in the metadata.

MODEL is an architecture (random weights), ``arch.tag`` (published weights), ``hf-hub:org/repo@rev`` or
``local-dir:/path``; named weights are loaded. The file is written only after onnxruntime reproduces the torch
model's embeddings at two batch sizes; ``reidzoo extract --onnx model.onnx ...`` then embeds without torch models.
"""
from __future__ import annotations

import argparse
import json

from ..deploy import DEFAULT_TOLERANCE, export_onnx
from ..models import create_model, split_model_name_tag


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('model', help='architecture, arch.tag, hf-hub:org/repo@rev or local-dir:/path')
    parser.add_argument('--out', required=True, help='the .onnx file to write (required)')
    parser.add_argument('--num-frames', type=int, default=None,
                        help="frames per clip of the graph (default: the model's cfg num_frames)")
    parser.add_argument('--static-batch', action='store_true',
                        help='export for batch 1 only (default: a dynamic batch axis)')
    parser.add_argument('--opset', type=int, default=None, help="ONNX opset (default: the exporter's)")
    parser.add_argument('--tolerance', type=float, default=DEFAULT_TOLERANCE,
                        help='max |onnxruntime - torch| / max |torch| accepted in the check '
                             f'(default: {DEFAULT_TOLERANCE:g})')
    parser.add_argument('--no-pretrained', action='store_true',
                        help='random weights even if MODEL names weights, for testing (default: load named weights)')
    parser.add_argument('--model-kwargs', default='{}',
                        help='JSON dict of architecture arguments, e.g. \'{"img_size": [224, 112]}\' (default: {})')


def _names_weights(model: str) -> bool:
    if model.startswith(('hf-hub:', 'local-dir:')):
        return True
    return bool(split_model_name_tag(model)[1])


def run(args: argparse.Namespace) -> int:
    pretrained = _names_weights(args.model) and not args.no_pretrained
    model = create_model(args.model, pretrained=pretrained, **json.loads(args.model_kwargs)).eval()
    out = export_onnx(model, args.out, num_frames=args.num_frames, dynamic_batch=not args.static_batch,
                      opset=args.opset, tolerance=args.tolerance)
    cfg = model.pretrained_cfg
    print(f'wrote {out} ({cfg.get("architecture", args.model)}, clips (B, {args.num_frames or cfg.get("num_frames")}, '
          f'{", ".join(str(v) for v in cfg.get("input_size", ()))}), verified with onnxruntime)')
    return 0
