"""The spec layer: facts about datasets, protocols and model configs, stated once, as data.

This package is the bottom of reidzoo's import graph: its modules import nothing else of reidzoo, so data, models,
eval, train and the command line can all read the same facts. ``reidzoo.spec.datasets`` holds the datasets and their
protocols; ``reidzoo.spec.model_cfg`` the typed model config and its resolver. Import the submodules directly.
"""
