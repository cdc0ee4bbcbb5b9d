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


# --- README's SynthVID block comes from the main job's own output ------------------------------------------------------
def _main_job():
    import importlib.util
    spec = importlib.util.spec_from_file_location('main_job', REPO / 'benchmarks' / 'main_job.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_main_job_section_is_sorted_by_map_and_names_its_data(tmp_path, monkeypatch):
    from types import SimpleNamespace
    from reidzoo.eval.report import LeaderboardRow
    mj = _main_job()
    monkeypatch.setenv('HF_HOME', str(tmp_path / 'hf'))

    def row(name, m_ap):
        return LeaderboardRow(model=name, dataset='synthvid', protocol='synthvid_standard',
                              metrics={'rank1': 0.1, 'rank5': 0.2, 'rank10': 0.3, 'rank20': 0.4, 'mAP': m_ap,
                                       'mINP': 0.05}, cmc=[], num_queries=1, num_gallery=1, distance='cosine',
                              test_sampling='dense')
    record = SimpleNamespace(root=str(tmp_path / 'data'), describe=lambda: 'SynthVID mars layout, 48 ids, seed 0')
    dataset = SimpleNamespace(record=record, default_protocol='synthvid_standard')
    text = mj.readme_section(tmp_path, [row('a.synthvid', 0.1), row('b.synthvid', 0.3)], {}, {'mAP': 0.05},
                             dataset, ['tp: trained on the scored folder'])
    assert text.index('| b.synthvid |') < text.index('| a.synthvid |') < text.index('colour-histogram')
    assert 'SynthVID mars layout, 48 ids, seed 0' in text
    assert f'REIDZOO_MANIFESTS={tmp_path / "weights_manifest.json"}' in text and 'HF_HUB_OFFLINE=1' in text


def test_main_job_update_readme_replaces_only_the_marked_block(tmp_path):
    mj = _main_job()
    out = tmp_path / 'out'
    (out / 'leaderboard').mkdir(parents=True)
    (out / 'leaderboard' / 'README_section.md').write_text('| new | table |\n')
    for name in mj.PICTURES:
        (out / 'leaderboard' / name).write_bytes(b'png ' + name.encode())
    readme, docs = tmp_path / 'README.md', tmp_path / 'docs'
    docs.mkdir()
    readme.write_text(f'# t\nbefore\n{mj.README_START}\n| old |\n{mj.README_END}\nafter\n')
    mj.update_readme(out, readme, docs)
    assert readme.read_text() == f'# t\nbefore\n{mj.README_START}\n| new | table |\n{mj.README_END}\nafter\n'
    assert all((docs / n).read_bytes() == b'png ' + n.encode() for n in mj.PICTURES)
    readme.write_text('no markers\n')
    with pytest.raises(SystemExit, match='main-job:leaderboard:start'):
        mj.update_readme(out, readme, docs)
