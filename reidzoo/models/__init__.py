"""reidzoo model families. Importing this package registers every architecture."""
from ._base import ModelOutput, VideoReIDModel
from ._builder import build_model_with_cfg, load_checkpoint, load_pretrained
from ._factory import create_model, parse_model_name
from ._registry import (
    get_arch_default_cfg, get_pretrained_cfg, is_model, list_models, list_modules, list_pretrained, model_entrypoint,
    register_model, split_model_name_tag,
)

# one module per family; importing registers its entrypoints
from . import temporal  # noqa: E402,F401
from . import sta, cstnet  # noqa: E402,F401
from . import sinet  # noqa: E402,F401
from . import cosam, stmp  # noqa: E402,F401
