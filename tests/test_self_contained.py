"""The repository is self-contained: nothing in it refers to files outside the checkout.

A user's clone has no sibling folders, so a path like ``../<folder>/...`` in code, docs or tests is a broken
reference (cite papers by title, venue and arXiv id instead, and vendor small test data under ``tests/data/``).
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# built from pieces so that this file does not match itself
_SHARED = 'sha' + 'red'
FORBIDDEN = re.compile(r'\.\./' + _SHARED + r'\b|/work/' + _SHARED + r'\b|\b' + _SHARED +
                       r'/(?:design|seeds|datasets-metadata)\b')
TEXT_SUFFIXES = {'.py', '.md', '.txt', '.yaml', '.yml', '.json', '.cfg', '.toml', '.ini', '.sh', '.rst', ''}


def repository_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored files (what a commit of the working tree would hold)."""
    try:
        out = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
        return [REPO / line for line in out.splitlines() if line and (REPO / line).is_file()]
    except (OSError, subprocess.CalledProcessError):  # an sdist or a copy without .git
        skip = {'.git', 'output', 'build', 'dist', '__pycache__'}
        return [p for p in REPO.rglob('*') if p.is_file() and not skip & set(p.relative_to(REPO).parts)]


def test_pattern_matches_what_it_should():
    bad = ['see ../' + _SHARED + '/seeds/002.txt', '/work/' + _SHARED + '/design/x.md',
           _SHARED + '/datasets-metadata/mars_info']
    ok = ['shared_memory', 'a shared trunk runner', 'torch.multiprocessing shared/ tensors']
    assert all(FORBIDDEN.search(s) for s in bad)
    assert not any(FORBIDDEN.search(s) for s in ok)


def test_no_reference_outside_the_repository():
    hits = []
    for path in repository_files():
        if path.suffix not in TEXT_SUFFIXES:
            continue
        try:
            text = path.read_text(encoding='utf-8')
        except (UnicodeDecodeError, OSError):
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f'{path.relative_to(REPO)}:{lineno}: {line.strip()[:120]}')
    assert not hits, ('files refer to folders outside the repository (a clone has none; cite papers by title, venue '
                      'and arXiv id, vendor test data under tests/data/):\n' + '\n'.join(hits))


def test_vendored_test_data_is_in_the_repository():
    metadata = REPO / 'tests' / 'data' / 'datasets-metadata'
    if not metadata.is_dir():
        pytest.fail(f'{metadata} is missing: the dataset tests need the vendored metadata files')
    assert (metadata / 'PROVENANCE.md').is_file()
