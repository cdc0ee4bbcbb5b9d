"""Training: recipes (``reidzoo/train/recipes/*.yaml``), the trainer, losses, resumable checkpoints and export.

>>> from reidzoo.train import train, list_recipes
>>> result = train('tp_synthvid', output_dir='runs/demo')   # python -m reidzoo.train / reidzoo train
>>> result.metrics['mAP']
"""
from .checkpoint import load_checkpoint, save_checkpoint
from .losses import ReIDLoss, batch_hard_triplet, cross_entropy, frame_info_nce, register_loss
from .recipes import Recipe, RecipeError, list_recipes, load_recipe
from .trainer import NonFiniteLossError, RunResult, Trainer, evaluate_model, train
from .export import export_run

__all__ = [
    'train', 'export_run', 'Trainer', 'RunResult', 'NonFiniteLossError', 'evaluate_model', 'Recipe', 'RecipeError',
    'list_recipes', 'load_recipe', 'ReIDLoss', 'batch_hard_triplet', 'cross_entropy', 'frame_info_nce',
    'register_loss', 'load_checkpoint', 'save_checkpoint',
]
