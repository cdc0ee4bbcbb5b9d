"""How fast ``import reidzoo`` and the command line answer, each in a fresh interpreter (cold module imports, warm
file-system cache: every command runs once untimed first).

Goals (issue: a fast command line): ``import reidzoo`` under twice ``import timm``; ``reidzoo --version`` and
``reidzoo --help`` under 1 s; ``reidzoo list`` and ``reidzoo info`` under 3 s. These are measured here, not asserted in
tests, because wall time depends on the machine and its load.

    python benchmarks/cli_speed.py             # median of 5 runs each
    python benchmarks/cli_speed.py --repeat 9 --json cli_speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, '-m', 'reidzoo']
# name -> (command, goal in seconds or None)
CASES: dict[str, tuple[list[str], Optional[float]]] = {
    'python -c pass': ([sys.executable, '-c', 'pass'], None),
    'import timm': ([sys.executable, '-c', 'import timm'], None),
    'import torch': ([sys.executable, '-c', 'import torch'], None),
    'import reidzoo': ([sys.executable, '-c', 'import reidzoo'], None),  # goal: < 2 x import timm (checked below)
    'reidzoo --version': ([*CLI, '--version'], 1.0),
    'reidzoo --help': ([*CLI, '--help'], 1.0),
    'reidzoo list': ([*CLI, 'list'], 3.0),
    'reidzoo info tp_resnet50': ([*CLI, 'info', 'tp_resnet50'], 3.0),
}


def time_command(cmd: list[str], repeat: int, env: dict[str, str]) -> list[float]:
    """Wall seconds of ``repeat`` runs of ``cmd`` (after one untimed warm-up run)."""
    times = []
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f'{" ".join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}')
        if i:
            times.append(elapsed)
    return times


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeat', type=int, default=5, help='timed runs per command (default: 5)')
    parser.add_argument('--json', default=None, help='also write the results to this JSON file (default: none)')
    args = parser.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE='1')
    results = {}
    print(f'| command | median s | min s | goal | ({args.repeat} runs, {os.cpu_count()} CPUs, '
          f'load {os.getloadavg()[0]:.1f}) |')
    print('|---|---|---|---|---|')
    for name, (cmd, goal) in CASES.items():
        times = time_command(cmd, args.repeat, env)
        med = statistics.median(times)
        results[name] = {'median_s': med, 'min_s': min(times), 'goal_s': goal}
        if name == 'import reidzoo':
            goal = 2 * results['import timm']['median_s']
            results[name]['goal_s'] = goal
        verdict = '' if goal is None else ('< %.1f ok' % goal if med < goal else '< %.1f MISSED' % goal)
        print(f'| `{name}` | {med:.2f} | {min(times):.2f} | {verdict} | |', flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
