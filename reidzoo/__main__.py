"""``python -m reidzoo ...`` (and ``torchrun --nproc_per_node N -m reidzoo benchmark ...``) = ``reidzoo ...``."""
import sys

from .cli import main

if __name__ == '__main__':
    sys.exit(main())
