"""torch.hub entrypoints for reidzoo: video person re-identification models on timm backbones.

Every architecture registered in reidzoo is an entrypoint of the same name (generated from the registry, so the
list never drifts), plus a generic ``create_model``. Keyword arguments go to :func:`reidzoo.create_model`.

Usage::

    import torch
    # from GitHub, pinned to a release tag (pinning also skips torch.hub's default-branch probe)
    model = torch.hub.load('reidzoo/reidzoo:v0.1.0', 'tp_resnet50', pretrained=True, trust_repo=True)
    # from a local checkout (works offline)
    model = torch.hub.load('/path/to/reidzoo', 'sinet_resnet50', source='local', pretrained=True)
    # any name reidzoo.create_model takes: 'arch', 'arch.tag', 'hf-hub:org/name@commit', 'local-dir:/path'
    model = torch.hub.load('/path/to/reidzoo', 'create_model', 'hf-hub:org/name@<commit>', source='local',
                           pretrained=True)
    emb = model.eval()(clips)  # clips: (B, T, 3, H, W) normalised with model.pretrained_cfg['mean'/'std']

``torch.hub.help(repo, name)`` prints an entrypoint's input size, sampling, distance and published weights.
Importing this file downloads nothing; weights are fetched (from the Hugging Face Hub, honouring ``HF_ENDPOINT``
and ``HF_HUB_OFFLINE``, and sha256-checked) only when an entrypoint is called with ``pretrained=True``.
"""
dependencies = ['torch', 'torchvision', 'timm', 'huggingface_hub', 'safetensors']

import reidzoo as _reidzoo  # noqa: E402  (torch.hub reads `dependencies` first; the repo root is on sys.path)


def _describe(name: str) -> str:
    """The ``torch.hub.help`` text of architecture ``name``: what it is, how to feed it, which weights exist."""
    from reidzoo.models._registry import get_arch_default_cfg, get_pretrained_tags, model_entrypoint
    summary = (model_entrypoint(name).__doc__ or name).strip().splitlines()[0]
    cfg = get_arch_default_cfg(name)
    c, h, w = cfg.get('input_size', (3, '?', '?'))
    lines = [
        f'{name}: {summary}',
        '',
        f'Input (B, T, {c}, H, W), default {h}x{w}, {cfg.get("num_frames", "?")} frames per clip, normalised with '
        f'mean {tuple(cfg.get("mean", ()))} and std {tuple(cfg.get("std", ()))}; test-time sampling '
        f'{cfg.get("test_sampling", "?")!r}, distance {cfg.get("distance", "?")!r}.',
    ]
    if cfg.get('paper_name'):
        lines.append(f'Paper: {cfg["paper_name"]} ({cfg.get("paper_ids", "")}).')
    try:
        tags = get_pretrained_tags(name)
    except Exception as e:  # a broken user manifest must not break `import hubconf`; creating the model will report it
        tags, lines = [], lines + [f'(Published weights unavailable: {type(e).__name__}.)']
    if tags:
        from reidzoo.manifest import load_manifest
        manifest = load_manifest()
        lines += ['', 'Published weights (pretrained=True loads the first; pick one with create_model(name.tag)):']
        for tag in tags:
            entry = manifest[f'{name}.{tag}']
            scores = ', '.join(f'{k} {v:.3f}' for k, v in entry.get('metrics', {}).items())
            lines.append(f'  {name}.{tag}: {entry.get("dataset")}, {entry.get("protocol")}: {scores}')
    else:
        lines += ['', 'No published weights yet: pretrained=True raises; train with `reidzoo train`.']
    lines += [
        '',
        'Args:',
        '    pretrained: load the published weights (pinned Hub revision, sha256-checked).',
        '    **kwargs: reidzoo.create_model arguments: num_classes, checkpoint_path, backbone=<timm name>,',
        '        num_frames, img_size=(H, W), pretrained_backbone, ...',
        '',
        'Returns:',
        '    The model in train mode; .eval() makes it return (B, model.num_features) embeddings.',
    ]
    return '\n'.join(lines)


def _make_entrypoint(name: str):
    def entrypoint(pretrained: bool = False, **kwargs):
        return _reidzoo.create_model(name, pretrained=pretrained, **kwargs)
    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = _describe(name)
    return entrypoint


def create_model(model_name: str, pretrained: bool = False, **kwargs):
    """Any reidzoo model: ``'arch'``, ``'arch.tag'``, ``'hf-hub:org/name[@revision]'`` or ``'local-dir:/path'``.

    Args:
        model_name: the model name (``reidzoo.list_models()`` / ``reidzoo.list_pretrained()`` list them).
        pretrained: load weights (published tag, or the repo's own for hf-hub / local-dir names).
        **kwargs: reidzoo.create_model arguments (num_classes, checkpoint_path, backbone, ...).

    Returns:
        The model (train mode).
    """
    return _reidzoo.create_model(model_name, pretrained=pretrained, **kwargs)


globals().update({_name: _make_entrypoint(_name) for _name in _reidzoo.list_models()})
