"""``python -m reidzoo.train ...`` (and ``torchrun --nproc_per_node N -m reidzoo.train ...``) = ``reidzoo train``."""
import sys

from ..cli import main

if __name__ == '__main__':
    sys.exit(main(['train', *sys.argv[1:]]))
