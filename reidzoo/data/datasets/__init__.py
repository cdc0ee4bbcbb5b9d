"""Parsers of the public video re-ID releases; importing this package registers them with ``build_dataset``."""
from .dukev import DukeMTMCVideoReID
from .ilidsvid import ILIDSVID
from .lsvid import LSVID
from .mars import Mars
from .prid2011 import PRID2011, load_prid2011_splits
