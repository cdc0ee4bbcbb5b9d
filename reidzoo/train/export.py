"""Export a finished training run as a Hub repo folder (``reidzoo export``).

``reidzoo export RUN_DIR --out DIR`` turns a finished run into a Hub repo folder (``model.safetensors``,
``config.json``, a model card with the measured metrics and their protocol, and the run's ``recipe.yaml``), ready for
``reidzoo push DIR org/name``.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Union

import torch

from ..hub import save_pretrained
from ..models import create_model
from .checkpoint import CHECKPOINT_NAME, load_checkpoint
from .recipes import load_recipe
from .trainer import RECIPE_FILE

__all__ = ['export_run', 'CARD_METRICS']

# metrics a model card records (fractions in [0, 1]); the rest of an evaluation record is bookkeeping
CARD_METRICS = ('mAP', 'mINP', 'rank1', 'rank5', 'rank10', 'rank20')


def export_run(run_dir: Union[str, Path], out_dir: Union[str, Path], checkpoint: Union[str, Path, None] = None,
               trust_pickle: bool = False) -> Path:
    """Write a run's trained model as a Hub repo folder.

    The model is rebuilt from the run's recipe and checkpoint (the classifier included, so the weights can be
    fine-tuned further or scored on the training identities). The metrics go into ``config.json`` and the model card
    only when they were measured on exactly these weights (the evaluation step equals the checkpoint step).

    Args:
        run_dir: a directory written by :func:`reidzoo.train.train`.
        out_dir: the repo folder to write.
        checkpoint: another checkpoint file of the run (default ``run_dir/checkpoint.pt``).
        trust_pickle: unpickle the checkpoint without restrictions (format-1 checkpoints of your own runs only; see
            :func:`~reidzoo.train.checkpoint.load_checkpoint`). By default nothing in the file can run code.

    Returns:
        ``out_dir``.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    recipe = load_recipe(run_dir / RECIPE_FILE)
    state = load_checkpoint(checkpoint or run_dir / CHECKPOINT_NAME, trust_pickle=trust_pickle)
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
