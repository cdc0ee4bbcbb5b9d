"""reidzoo: a model zoo for video person re-identification.

>>> import reidzoo
>>> reidzoo.list_models('cosam_*')
>>> model = reidzoo.create_model('sinet_resnet50.mars', pretrained=True).eval()
"""
from .version import __version__
from .models import (
    ModelOutput, VideoReIDModel, create_model, get_pretrained_cfg, is_model, list_models, list_modules,
    list_pretrained, register_model,
)
