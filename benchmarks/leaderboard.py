"""Leaderboard: score models on MARS, DukeMTMC-VideoReID, LS-VID, iLIDS-VID, PRID-2011 (or SynthVID) with each
dataset's standard protocol, beside the papers' numbers. The same as ``reidzoo benchmark``; see README.md
"Leaderboard on the real datasets".

    python benchmarks/leaderboard.py --models sinet_resnet50.mars --dataset mars --root /data/mars
    torchrun --nproc_per_node 4 benchmarks/leaderboard.py --models ... --dataset mars --root /data/mars
"""
import sys

from reidzoo.cli import main

if __name__ == '__main__':
    sys.exit(main(['benchmark', *sys.argv[1:]]))
