"""reidzoo's layers, bottom up, and the import direction between them (parsed with ``ast``, nothing is imported).

    spec                       facts as data (datasets, protocols, model cfg, paper results); imports nothing of reidzoo
    core                       _atomic, version, manifest, utils: small helpers every layer may use
    hub                        reads and writes Hub repos; a leaf like timm's _hub.py: only spec and core below it
    data | models              siblings that never import each other: parsers/sampling/SynthVID; layers and
                               architectures (with the registry, _builder and _backbone they are built from)
    builder                    create_model (models/__init__, models/_factory), convert, deploy (ONNX), loopback mirror
    eval                       extraction, distances, metrics, protocols, leaderboard
    train | search | match     applications of eval (siblings)
    cli                        the command line, ``python -m`` shims and the ``reidzoo`` facade package

A module may import modules of its own group or of a lower layer. Imports inside functions count the same as
module-level ones: a lazy import still makes the lower layer depend on the upper one (lazy imports of optional
third-party packages are fine, they are not reidzoo modules). Library code must not import the ``reidzoo`` facade
itself (``from .. import create_model``): the facade sits on top and lazily exposes every layer, so importing it
from below hides an upward dependency; import the defining module (``reidzoo.models``) instead.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, NamedTuple, Optional

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / 'reidzoo'

# group -> rank: a module of group G may import group H iff H == G or rank(H) < rank(G); groups of equal rank are
# siblings and may not import each other.
GROUP_RANK: dict[str, int] = {
    'spec': 0,
    'core': 1,
    'hub': 2,
    'data': 3, 'models': 3,
    'builder': 4,
    'eval': 5,
    'train': 6, 'search': 6, 'match': 6,
    'cli': 7,
}

# module prefix -> group, longest prefix wins
MODULE_GROUPS: dict[str, str] = {
    'reidzoo.spec': 'spec',
    'reidzoo._atomic': 'core', 'reidzoo.version': 'core', 'reidzoo.manifest': 'core', 'reidzoo.utils': 'core',
    'reidzoo.data': 'data',
    'reidzoo.layers': 'models', 'reidzoo.models._base': 'models', 'reidzoo.models._backbone': 'models',
    'reidzoo.models._registry': 'models', 'reidzoo.models._builder': 'models',
    'reidzoo.models.temporal': 'models', 'reidzoo.models.cosam': 'models', 'reidzoo.models.sinet': 'models',
    'reidzoo.models.stmp': 'models', 'reidzoo.models.sta': 'models', 'reidzoo.models.cstnet': 'models',
    'reidzoo.hub': 'hub',
    'reidzoo.models': 'builder', 'reidzoo.models._factory': 'builder', 'reidzoo.convert': 'builder',
    'reidzoo.hub_mirror': 'builder', 'reidzoo.deploy': 'builder',
    'reidzoo.eval': 'eval',
    'reidzoo.train': 'train', 'reidzoo.search': 'search', 'reidzoo.match': 'match',
    'reidzoo.cli': 'cli', 'reidzoo.__main__': 'cli', 'reidzoo.train.__main__': 'cli', 'reidzoo': 'cli',
}
# where the group of a module that is not listed is taken from its parent package: a new model family file
# (reidzoo/models/newnet.py) is 'models', not 'builder'
PARENT_DEFAULTS: dict[str, str] = {'reidzoo.models': 'models'}
FACADE = 'reidzoo'


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def group_of(module: str) -> Optional[str]:
    """The layer group of a reidzoo module name, or None if no rule covers it."""
    if module in MODULE_GROUPS:
        return MODULE_GROUPS[module]
    parent = module.rsplit('.', 1)[0]
    if parent in PARENT_DEFAULTS and module.count('.') == parent.count('.') + 1:
        return PARENT_DEFAULTS[parent]
    for prefix in sorted(MODULE_GROUPS, key=len, reverse=True):
        if prefix != FACADE and module.startswith(prefix + '.'):
            return MODULE_GROUPS[prefix]
    return None


class Import(NamedTuple):
    source: str  # importing module
    target: str  # imported reidzoo module
    path: Path
    line: int
    in_function: bool


def _is_package(module: str) -> bool:
    return (PACKAGE_DIR.parent / module.replace('.', '/') / '__init__.py').is_file()


def _is_module(module: str) -> bool:
    return _is_package(module) or (PACKAGE_DIR.parent / (module.replace('.', '/') + '.py')).is_file()


def reidzoo_imports(path: Path) -> Iterator[Import]:
    """Every import of a reidzoo module in a file, module-level and function-level, with relative imports resolved.

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg`` itself.
    """
    source = module_name(path)
    package = source if path.name == '__init__.py' else source.rsplit('.', 1)[0]
    tree = ast.parse(path.read_text(encoding='utf-8'), filename=str(path))
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - (node.level - 1)]
                base_module = '.'.join(base + ([node.module] if node.module else []))
            else:
                base_module = node.module or ''
            targets = []
            for alias in node.names:
                sub = f'{base_module}.{alias.name}'
                targets.append(sub if _is_module(sub) else base_module)
        else:
            continue
        for target in targets:
            if target == 'reidzoo' or target.startswith('reidzoo.'):
                yield Import(source, target, path, node.lineno, id(node) in in_function)


def all_imports() -> list[Import]:
    return [imp for path in sorted(PACKAGE_DIR.rglob('*.py')) for imp in reidzoo_imports(path)]


def violation(imp: Import) -> Optional[str]:
    """Why an import breaks the layering, or None."""
    src, dst = group_of(imp.source), group_of(imp.target)
    if src is None or dst is None:
        return None  # reported by test_every_module_has_a_layer
    if imp.target == FACADE and src != 'cli':
        return 'imports the reidzoo facade package; import the defining module (e.g. reidzoo.models) instead'
    if src == dst:
        return None
    if GROUP_RANK[dst] < GROUP_RANK[src]:
        return None
    relation = 'a sibling' if GROUP_RANK[dst] == GROUP_RANK[src] else 'a higher'
    return f'{src} imports {relation} layer, {dst}'


def format_violations(imports: list[Import]) -> list[str]:
    out = []
    for imp in imports:
        why = violation(imp)
        if why:
            where = 'inside a function' if imp.in_function else 'at module level'
            rel = imp.path.relative_to(PACKAGE_DIR.parent)
            out.append(f'{rel}:{imp.line}: {imp.source} -> {imp.target} ({where}): {why}')
    return out


# --- the checker itself ------------------------------------------------------------------------------------------------
def _imports_of(tmp_path: Path, relpath: str, code: str) -> list[Import]:
    # a fake file inside the real package tree would be seen by other tests; parse it as if it lived there
    path = PACKAGE_DIR / relpath
    fake = tmp_path / 'x.py'
    fake.write_text(code)
    original = Path.read_text

    def read_text(self, *args, **kwargs):
        return original(fake if self == path else self, *args, **kwargs)
    mp = pytest.MonkeyPatch()
    mp.setattr(Path, 'read_text', read_text)
    try:
        return list(reidzoo_imports(path))
    finally:
        mp.undo()


def test_checker_resolves_relative_and_function_level_imports(tmp_path):
    code = ('from ..eval import metrics\nfrom .dataset import Tracklet\nimport reidzoo.models\n'
            'def f():\n    from .. import create_model\n    from ..models._factory import create_model\n')
    imps = _imports_of(tmp_path, 'data/fake.py', code)
    got = [(i.target, i.in_function) for i in imps]
    assert got == [('reidzoo.eval.metrics', False), ('reidzoo.data.dataset', False), ('reidzoo.models', False),
                   ('reidzoo', True), ('reidzoo.models._factory', True)]
    why = [violation(i) for i in imps]
    assert why[0] == 'data imports a higher layer, eval'
    assert why[1] is None
    assert why[2] == 'data imports a higher layer, builder'
    assert 'facade' in why[3]
    assert why[4] == 'data imports a higher layer, builder'
    nested = _imports_of(tmp_path, 'data/datasets/fake.py', 'from ..dataset import Tracklet\n')
    assert [i.target for i in nested] == ['reidzoo.data.dataset']


def test_checker_groups():
    assert group_of('reidzoo.spec.datasets') == 'spec'
    assert group_of('reidzoo.models.sinet') == 'models'
    assert group_of('reidzoo.models.newfamily') == 'models'
    assert group_of('reidzoo.models') == 'builder'
    assert group_of('reidzoo.data.synthvid.render') == 'data'
    assert group_of('reidzoo.train.__main__') == 'cli'
    assert group_of('reidzoo') == 'cli'
    # siblings may not import each other
    assert violation(Import('reidzoo.hub', 'reidzoo.models._registry', Path('x'), 1, False)) == \
        'hub imports a higher layer, models'
    assert violation(Import('reidzoo.models._builder', 'reidzoo.hub', Path('x'), 1, True)) is None
    assert violation(Import('reidzoo.models.sinet', 'reidzoo.data.io', Path('x'), 1, False)) == \
        'models imports a sibling layer, data'
    assert violation(Import('reidzoo.eval.extract', 'reidzoo.data.io', Path('x'), 1, True)) is None


# --- the repository ----------------------------------------------------------------------------------------------------
def test_every_module_has_a_layer():
    missing = sorted({module_name(p) for p in PACKAGE_DIR.rglob('*.py') if group_of(module_name(p)) is None})
    assert not missing, f'modules with no layer: {missing}; add them to MODULE_GROUPS in {Path(__file__).name}'


def test_spec_imports_nothing_of_reidzoo():
    bad = [f'{i.path.relative_to(PACKAGE_DIR.parent)}:{i.line}: {i.target}' for i in all_imports()
           if group_of(i.source) == 'spec' and group_of(i.target) != 'spec']
    assert not bad, 'the spec layer must import nothing else of reidzoo:\n' + '\n'.join(bad)


def test_imports_follow_the_layers():
    bad = format_violations(all_imports())
    assert not bad, f'{len(bad)} imports break the layering (see this file\'s docstring):\n' + '\n'.join(bad)


def test_import_reidzoo_is_lazy():
    """``import reidzoo`` loads no heavy dependency; the subpackages and the model API load on first attribute use."""
    import subprocess
    import sys
    code = (
        'import sys, reidzoo\n'
        'heavy = sorted(m for m in ("torch", "timm", "numpy", "reidzoo.models", "reidzoo.data") if m in sys.modules)\n'
        'assert not heavy, heavy\n'
        'for name in ("data", "eval", "hub", "train", "convert", "spec"):\n'
        '    assert getattr(reidzoo, name).__name__ == "reidzoo." + name\n'
        'assert callable(reidzoo.create_model) and "tp_resnet50" in reidzoo.list_models("tp_*")\n'
        'assert {"data", "create_model"} <= set(dir(reidzoo))\n'
        'try:\n'
        '    reidzoo.no_such_thing\n'
        'except AttributeError:\n'
        '    pass\n'
        'else:\n'
        '    raise AssertionError("unknown attribute resolved")\n'
    )
    proc = subprocess.run([sys.executable, '-c', code], cwd=PACKAGE_DIR.parent, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
