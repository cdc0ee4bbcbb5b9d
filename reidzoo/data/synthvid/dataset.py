"""SynthVID as a registered dataset: ``build_dataset('synthvid', root)`` like any other benchmark.

A SynthVID folder is parsed by the regular parser of the layout it was written in (its record says which), and
scored with its own protocol, ``synthvid_standard`` (the Market-1501 rule), whatever the layout. A folder that does
not exist yet (or ``root=None``, the cache) is generated first, atomically, from the given parameters.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from ..dataset import DatasetError, Tracklet, VideoReIDDataset, build_dataset, register_dataset
from .layouts import MARKER, SynthVIDRecord, _params, _params_hash, _remove_stale_tmp, generate, read_record

__all__ = ['SynthVID', 'build_synthvid', 'synthvid_cache_dir', 'DEFAULT_PARAMS']

# what generate() uses for a parameter the caller leaves out (num_ids and lengths default per layout)
DEFAULT_PARAMS: dict[str, Any] = {'layout': 'mars', 'seed': 0, 'frame_size': (64, 32)}


def synthvid_cache_dir() -> str:
    """``$REIDZOO_CACHE/synthvid``, else ``$XDG_CACHE_HOME/reidzoo/synthvid``, else ``~/.cache/reidzoo/synthvid``."""
    base = os.environ.get('REIDZOO_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'), 'reidzoo')
    return os.path.join(base, 'synthvid')


def _resolve_root(root: Optional[str | os.PathLike], requested: dict[str, Any]) -> str:
    """The folder to parse: an existing SynthVID folder that agrees with ``requested``, or one generated now.

    ``requested`` holds only the parameters the caller gave (None ones are left out): an existing folder supplies the
    rest from its record, so ``build_dataset('synthvid', root)`` needs no repeated generation arguments.
    """
    if root is None:
        params = _params(**{**DEFAULT_PARAMS, 'num_ids': None, 'lengths': None, **requested})
        root = os.path.join(synthvid_cache_dir(), f'{params["layout"]}-{_params_hash(params)}')
    root = os.path.abspath(os.fspath(root))
    _remove_stale_tmp(root)
    if os.path.isfile(os.path.join(root, MARKER)):
        record = read_record(root)
        found = record.params()
        wanted = _params(**{**found, **requested})
        found = _params(**found)
        if any(wanted[k] != found[k] for k in requested):
            raise ValueError(f'{root} holds SynthVID generated with {found}, not the requested {wanted}; pass a '
                             'different root (or root=None to use the cache), or leave the parameters out to use '
                             'the folder as it is.')
        return root
    if os.path.isdir(root) and os.listdir(root):
        raise DatasetError(f'{root} is not a SynthVID folder (no {MARKER}) and is not empty, so SynthVID cannot be '
                           'generated there: pass the folder `reidzoo synth --out DIR` wrote, or a new or empty '
                           'folder to generate into.')
    params = _params(**{**DEFAULT_PARAMS, 'num_ids': None, 'lengths': None, **requested})
    params.pop('version')  # the generator's own, not a choice
    return generate(root, **params)


@register_dataset
class SynthVID(VideoReIDDataset):
    """SynthVID, reidzoo's generated benchmark, parsed by the parser of the layout it was written in.

    Attributes (besides the :class:`VideoReIDDataset` ones):
        layout: the real dataset whose on-disk layout the folder imitates.
        record: the folder's :class:`SynthVIDRecord` (generation parameters and counts).
    """
    name = 'synthvid'
    default_protocol = 'synthvid_standard'
    markers = (MARKER,)
    source = 'Generate it with `reidzoo synth --layout mars --out DIR` (or build_dataset("synthvid", None)).'

    def __init__(
            self,
            root: Optional[str | os.PathLike] = None,
            layout: Optional[str] = None,
            num_ids: Optional[int] = None,
            seed: Optional[int] = None,
            frame_size: Optional[Sequence[int]] = None,
            lengths: Optional[Sequence[float]] = None,
            check_frames: bool = False,
            **parser_kwargs: Any,
    ):
        """
        Args:
            root: a folder written by ``reidzoo synth`` / :func:`generate` (its parameters are read from its
                record), a new or empty folder to generate into, or ``None`` for
                ``<cache>/<layout>-<hash of the parameters>`` (see :func:`synthvid_cache_dir`).
            layout, num_ids, seed, frame_size, lengths: generation parameters (see :func:`generate`). Leave them out
                to use an existing folder as it is; given ones must agree with its record. Defaults when
                generating: ``layout='mars'``, ``seed=0``, ``frame_size=(64, 32)``, per-layout ``num_ids`` and
                ``lengths``.
            check_frames: verify that every frame file exists.
            **parser_kwargs: passed to the layout's parser, e.g. ``split_id=3`` for the ``ilidsvid`` and
                ``prid2011`` layouts.
        """
        requested = {k: v for k, v in (('layout', layout), ('num_ids', num_ids), ('seed', seed),
                                       ('frame_size', frame_size), ('lengths', lengths)) if v is not None}
        resolved = _resolve_root(root, requested)
        self.record: SynthVIDRecord = read_record(resolved)
        self.layout: str = self.record.layout
        self._parser_kwargs = dict(parser_kwargs)
        super().__init__(resolved, check_frames=check_frames)

    def load(self) -> tuple[list[Tracklet], list[Tracklet], list[Tracklet], list[Tracklet]]:
        parsed = build_dataset(self.layout, self.root, **self._parser_kwargs)
        return parsed.train, parsed.query, parsed.gallery, parsed.junk

    def summary(self) -> str:
        return super().summary().replace(f'=> Loaded {self.name}', f'=> Loaded {self.record.describe()}', 1)


def build_synthvid(root: Optional[str | os.PathLike] = None, **kwargs: Any) -> SynthVID:
    """SynthVID as a parsed dataset, generating it first if needed: ``build_dataset('synthvid', root, **kwargs)``.

    See :class:`SynthVID` for the arguments (generation parameters, ``check_frames``, the layout parser's options).
    """
    return SynthVID(root, **kwargs)
