"""The ``reidzoo`` command line.

Each subcommand lives next to the code it drives: the module named in :data:`COMMANDS` exposes
``add_cli_arguments(parser)`` and ``run_cli(args) -> int``. Modules are imported only when their command runs, so
``reidzoo list`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Optional, Sequence

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    'list': ('reidzoo.cli', 'list architectures or published weights'),
    'info': ('reidzoo.cli', 'show an architecture: cfg, parameters, GFLOPs, published tags'),
    'download': ('reidzoo.cli', 'download (and verify) published weights into the Hub cache'),
    'convert': ('reidzoo.convert', "convert an authors' checkpoint to a reidzoo safetensors file"),
    'train': ('reidzoo.train.cli', 'train a model from a recipe'),
    'export': ('reidzoo.train.cli', 'export a finished run as a Hub repo folder'),
    'push': ('reidzoo.hub', 'upload an exported folder to the Hub and print its manifest entry'),
    'extract': ('reidzoo.eval.extract', 'embed your own tracklets (folders of frames)'),
    'benchmark': ('reidzoo.eval.leaderboard', 'score models on benchmarks with the standard protocols'),
    'synth': ('reidzoo.data.synthvid', 'generate SynthVID in a benchmark layout'),
}


# --- list / info / download (the registry's own commands) ---------------------------------------------------------
def _add_list(p: argparse.ArgumentParser) -> None:
    p.add_argument('pattern', nargs='?', default='', help="fnmatch filter, e.g. 'cosam_*'")
    p.add_argument('--pretrained', action='store_true', help='only published weights (arch.tag)')


def _run_list(args: argparse.Namespace) -> int:
    from . import list_models
    for name in list_models(args.pattern, pretrained=args.pretrained):
        print(name)
    return 0


def _add_info(p: argparse.ArgumentParser) -> None:
    p.add_argument('name', help='architecture or arch.tag')
    p.add_argument('--model-kwargs', default='{}', help='JSON dict of architecture arguments')
    p.add_argument('--no-flops', action='store_true', help='skip the GFLOPs count')


def count_gflops(model, input_shape: tuple[int, ...]) -> float:
    """GFLOPs of one forward pass in eval mode (``torch.utils.flop_counter``; one multiply-add = 2 FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    ref = next(model.parameters())
    x = torch.zeros(input_shape, dtype=ref.dtype, device=ref.device)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 1e9


def _run_info(args: argparse.Namespace) -> int:
    from . import create_model
    from .models import split_model_name_tag
    from .models._registry import get_pretrained_tags
    model = create_model(args.name, **json.loads(args.model_kwargs))
    cfg = dict(model.pretrained_cfg)
    arch, _ = split_model_name_tag(args.name)
    params = sum(p.numel() for p in model.parameters())
    print(f'architecture: {arch}')
    print(f'class:        {type(model).__module__}.{type(model).__name__}')
    print(f'parameters:   {params / 1e6:.2f} M (num_classes={model.num_classes})')
    print(f'embedding:    {model.num_features}-d')
    c, h, w = cfg.get('input_size', (3, 256, 128))
    t = cfg.get('num_frames', 4)
    if not args.no_flops:
        print(f'GFLOPs:       {count_gflops(model, (1, t, c, h, w)):.2f} per clip of {t}x{c}x{h}x{w}')
    tags = get_pretrained_tags(arch)
    print(f'pretrained:   {", ".join(f"{arch}.{t}" for t in tags) or "none published"}')
    print('pretrained_cfg:')
    for k in sorted(cfg):
        print(f'  {k}: {cfg[k]}')
    return 0


def _add_download(p: argparse.ArgumentParser) -> None:
    p.add_argument('name', help='arch or arch.tag with published weights')


def _run_download(args: argparse.Namespace) -> int:
    from . import get_pretrained_cfg
    cfg = get_pretrained_cfg(args.name)
    if not cfg.get('hf_hub_id'):
        print(f'No published weights for {args.name}; `reidzoo list --pretrained` shows what exists.', file=sys.stderr)
        return 1
    from .hub import download_weights
    print(download_weights(cfg))
    return 0


_LOCAL = {'list': (_add_list, _run_list), 'info': (_add_info, _run_info), 'download': (_add_download, _run_download)}


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__
    parser = argparse.ArgumentParser(prog='reidzoo', description='Video person re-identification model zoo.')
    parser.add_argument('--version', action='version', version=f'reidzoo {__version__}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name in _LOCAL:
            _LOCAL[name][0](p)
        else:
            p.set_defaults(_lazy=True)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # subcommands in other modules add their arguments lazily, so parse the command name first
    if argv and argv[0] in COMMANDS and argv[0] not in _LOCAL:
        module = importlib.import_module(COMMANDS[argv[0]][0])
        p = argparse.ArgumentParser(prog=f'reidzoo {argv[0]}', description=COMMANDS[argv[0]][1])
        module.add_cli_arguments(p, argv[0]) if _takes_command(module) else module.add_cli_arguments(p)
        args = p.parse_args(argv[1:])
        args.command = argv[0]
        return int(module.run_cli(args) or 0)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    return int(_LOCAL[args.command][1](args) or 0)


def _takes_command(module) -> bool:
    import inspect
    return len(inspect.signature(module.add_cli_arguments).parameters) > 1


if __name__ == '__main__':
    sys.exit(main())
