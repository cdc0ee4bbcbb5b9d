"""A non-editable install works: build the wheel, check its contents, install it into a fresh venv and run the
command line from the installed copy (nothing may be read from the checkout: package data must be in the wheel).

The venv reuses this interpreter's site-packages (``--system-site-packages``) for torch, timm and the other
dependencies, and the wheel is installed with ``--no-deps``, so nothing is downloaded. The commands run from an empty
folder so that the checkout is not on ``sys.path``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the checkout's own clutter, never part of a build
_IGNORE = shutil.ignore_patterns('.git', 'output', 'dist', 'build', '*.egg-info', '__pycache__', '.pytest_cache',
                                 '*.pyc')


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f'{" ".join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}'
    return proc.stdout


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout (building in place would write build/ into the repository)."""
    base = tmp_path_factory.mktemp('wheel')
    src = base / 'src'
    shutil.copytree(REPO, src, ignore=_IGNORE)
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(base / 'dist'),
          str(src)], cwd=base, env=dict(os.environ))
    (whl,) = (base / 'dist').glob('reidzoo-*.whl')
    return whl


@pytest.fixture(scope='module')
def venv(wheel, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with the wheel installed; returns its bin folder and an environment for running it."""
    base = tmp_path_factory.mktemp('venv')
    root = base / 'venv'
    _run([sys.executable, '-m', 'venv', '--system-site-packages', '--without-pip', str(root)], cwd=base,
         env=dict(os.environ))
    bin_dir = root / 'bin'
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'REIDZOO_MANIFESTS')}
    env.update({'REIDZOO_CACHE': str(base / 'cache'), 'HF_HOME': str(base / 'hf-home'), 'HF_HUB_OFFLINE': '1',
                'OMP_NUM_THREADS': '2', 'PATH': f'{bin_dir}{os.pathsep}{env.get("PATH", "")}'})
    # this interpreter's pip, run by the venv's python, installs into the venv
    _run([str(bin_dir / 'python'), '-m', 'pip', 'install', '--no-deps', '--no-index', '-q', str(wheel)], cwd=base,
         env=env)
    return bin_dir, env


@pytest.mark.slow
def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    # every file of the package in the checkout (code and data) is in the wheel
    package_files = {p.relative_to(REPO).as_posix() for p in (REPO / 'reidzoo').rglob('*')
                     if p.is_file() and '__pycache__' not in p.parts and p.suffix != '.pyc'}
    missing = sorted(package_files - names)
    assert not missing, f'files of reidzoo/ missing from the wheel (add them to setup.cfg package_data): {missing}'
    for required in ('reidzoo/spec/paper_results.json', 'reidzoo/weights_manifest.schema.json',
                     'reidzoo/train/recipes/tp_synthvid.yaml', 'reidzoo/data/synthvid/render.py'):
        assert required in names
    assert any(n.endswith('.data/data/share/reidzoo/weights_manifest.json') for n in names)
    assert not any(n.startswith(('tests/', 'benchmarks/', 'docs/')) for n in names)
    entry_points = next(n for n in names if n.endswith('.dist-info/entry_points.txt'))
    assert 'reidzoo = reidzoo.cli:main' in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_installed_cli_runs_from_the_wheel(venv, tmp_path):
    bin_dir, env = venv
    site = _run([str(bin_dir / 'python'), '-c',
                 'import reidzoo, reidzoo.eval.leaderboard as lb, reidzoo.train.recipes as r;'
                 'print(reidzoo.__file__); print(lb.PAPER_RESULTS); print(len(lb.load_paper_results()));'
                 'print(len(r.list_recipes()))'], cwd=tmp_path, env=env).split('\n')
    venv_root = str(bin_dir.parent)
    assert site[0].startswith(venv_root) and site[1].startswith(venv_root), site  # not the checkout
    assert int(site[2]) > 0 and int(site[3]) > 0  # the papers' numbers and the recipes are package data
    assert _run([str(bin_dir / 'reidzoo'), '--version'], cwd=tmp_path, env=env).startswith('reidzoo ')
    assert 'tp_synthvid' in _run([str(bin_dir / 'reidzoo'), 'train', '--list'], cwd=tmp_path, env=env).split()

    # a shipped recipe trains (a few steps on 8 generated identities)
    _run([str(bin_dir / 'reidzoo'), 'train', '--recipe', 'tp_synthvid', '--output', 'run', '--set',
          'data.dataset_kwargs.num_ids=8', 'data.dataset_kwargs.lengths=[2,6,3]', 'data.num_ids=4',
          'schedule.epochs=1', 'schedule.milestones=[1]', 'train.progress=false'], cwd=tmp_path, env=env)
    assert (tmp_path / 'run' / 'metrics.json').is_file()

    # the leaderboard runs on a SynthVID folder written by the installed `reidzoo synth` (parameters read from it)
    _run([str(bin_dir / 'reidzoo'), 'synth', '--out', 'synth', '--num-ids', '4', '--frame-size', '32', '16',
          '--lengths', '2', '4', '3'], cwd=tmp_path, env=env)
    out = _run([str(bin_dir / 'reidzoo'), 'benchmark', '--models', 'tp_resnet50', '--model-kwargs',
                '{"backbone": "test_resnet", "img_size": [32, 16]}', '--dataset', 'synthvid', '--root', 'synth',
                '--workers', '0', '--no-plots', '--output', 'lb'], cwd=tmp_path, env=env)
    assert '| tp_resnet50 | synthvid | synthvid_standard |' in out
    assert (tmp_path / 'lb' / 'leaderboard.json').is_file()
