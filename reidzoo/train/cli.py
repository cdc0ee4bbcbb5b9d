"""``reidzoo train`` and ``reidzoo export``.

``reidzoo train --recipe NAME_OR_PATH [--set key=value ...] --output RUN_DIR [--resume]`` runs a recipe (also as
``python -m reidzoo.train`` and ``torchrun --nproc_per_node N -m reidzoo.train``); ``reidzoo train --list`` shows the
shipped recipes.

``reidzoo export RUN_DIR --out DIR`` turns a finished run into a Hub repo folder (``model.safetensors``,
``config.json``, a model card with the measured metrics and their protocol, and the run's ``recipe.yaml``), ready for
``reidzoo push DIR org/name``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

__all__ = ['add_cli_arguments', 'run_cli', 'export_run', 'main']

# metrics a model card records (fractions in [0, 1]); the rest of an evaluation record is bookkeeping
CARD_METRICS = ('mAP', 'mINP', 'rank1', 'rank5', 'rank10', 'rank20')


def export_run(run_dir: Union[str, Path], out_dir: Union[str, Path], checkpoint: Union[str, Path, None] = None) -> Path:
    """Write a run's trained model as a Hub repo folder.

    The model is rebuilt from the run's recipe and checkpoint (the classifier included, so the weights can be
    fine-tuned further or scored on the training identities). The metrics go into ``config.json`` and the model card
    only when they were measured on exactly these weights (the evaluation step equals the checkpoint step).

    Args:
        run_dir: a directory written by :func:`reidzoo.train.train`.
        out_dir: the repo folder to write.
        checkpoint: another checkpoint file of the run (default ``run_dir/checkpoint.pt``).

    Returns:
        ``out_dir``.
    """
    import torch
    from .. import create_model
    from ..hub import save_pretrained
    from .checkpoint import CHECKPOINT_NAME, load_checkpoint
    from .recipes import load_recipe
    from .trainer import RECIPE_FILE
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    recipe = load_recipe(run_dir / RECIPE_FILE)
    state = load_checkpoint(checkpoint or run_dir / CHECKPOINT_NAME)
    spec = state['model_config']
    model = create_model(spec['architecture'], num_classes=spec['num_classes'],
                         pretrained_cfg_overlay=spec.get('cfg_overlay') or None, **spec['model_args'])
    model.load_state_dict(state['model'])
    model.eval()
    metrics = state.get('metrics') or {}
    if metrics and metrics.get('step') != state['step']:
        print(f'Note: the last evaluation ran at step {metrics.get("step")}, the checkpoint is at step '
              f'{state["step"]}; exporting without metrics (finish the run, or evaluate these weights with '
              f'`reidzoo benchmark`).', file=sys.stderr)
        metrics = {}
    if state['epoch'] < recipe['schedule']['epochs']:
        print(f'Note: {run_dir} stopped at epoch {state["epoch"]} of {recipe["schedule"]["epochs"]}.', file=sys.stderr)
    with torch.no_grad():
        save_pretrained(model, out_dir, dataset=recipe['data']['dataset'], protocol=metrics.get('protocol'),
                        metrics={k: metrics[k] for k in CARD_METRICS if k in metrics} or None,
                        recipe=recipe['name'])
    shutil.copyfile(run_dir / RECIPE_FILE, out_dir / RECIPE_FILE)
    return out_dir


def add_cli_arguments(parser: argparse.ArgumentParser, command: str = 'train') -> None:
    """Arguments of ``reidzoo train`` or ``reidzoo export``."""
    if command == 'export':
        parser.add_argument('run_dir', help='run directory written by `reidzoo train`')
        parser.add_argument('--out', required=True, help='folder to write the Hub repo layout into')
        parser.add_argument('--checkpoint', default=None, help='checkpoint file (default RUN_DIR/checkpoint.pt)')
        return
    parser.add_argument('--recipe', default=None,
                        help='shipped recipe name (see --list) or path to a YAML recipe; optional with --resume')
    parser.add_argument('--set', dest='overrides', action='append', nargs='+', default=[], metavar='KEY=VALUE',
                        help='override recipe keys, e.g. --set optim.lr=1e-4 data.root=/data/mars')
    parser.add_argument('--output', default=None, help='run directory (checkpoints, log.jsonl, metrics.json)')
    parser.add_argument('--resume', action='store_true', help='continue the run in --output from its checkpoint')
    parser.add_argument('--list', action='store_true', help='list the shipped recipes and exit')
    parser.add_argument('--show', action='store_true', help='print the resolved recipe and exit')


def run_cli(args: argparse.Namespace) -> int:
    """Run ``reidzoo train`` / ``reidzoo export`` (``args.command``)."""
    from .recipes import RecipeError, list_recipes, load_recipe
    from .trainer import NonFiniteLossError, train
    if getattr(args, 'command', 'train') == 'export':
        out = export_run(args.run_dir, args.out, args.checkpoint)
        print(out)
        return 0
    if args.list:
        for name in list_recipes():
            print(name)
        return 0
    overrides = [o for group in args.overrides for o in group]
    try:
        if args.show:
            print(load_recipe(args.recipe, overrides).dump(), end='')
            return 0
        if not args.output:
            print('reidzoo train: --output RUN_DIR is required.', file=sys.stderr)
            return 2
        result = train(args.recipe, overrides, output_dir=args.output, resume=args.resume)
    except (RecipeError, FileExistsError) as e:
        print(f'reidzoo train: {e}', file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f'reidzoo train: {e}', file=sys.stderr)
        return 1
    finally:
        _shutdown_distributed()
    if result.metrics and _is_main():
        print(json.dumps({k: v for k, v in result.metrics.items()}, indent=2))
    return 0


def _is_main() -> bool:
    import os
    return os.environ.get('RANK', '0') == '0'


def _shutdown_distributed() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m reidzoo.train``: the arguments of ``reidzoo train``."""
    parser = argparse.ArgumentParser(prog='python -m reidzoo.train', description='Train a model from a recipe.')
    add_cli_arguments(parser, 'train')
    args = parser.parse_args(argv)
    args.command = 'train'
    return run_cli(args)
