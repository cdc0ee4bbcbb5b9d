"""SynthVID: a procedurally generated video re-ID benchmark, written in the exact on-disk layout of a real one.

* :mod:`.render` -- who the people are (:class:`Identity`), what the cameras do (:class:`Camera`) and how a
  tracklet's frames are drawn (:func:`render_tracklet`);
* :mod:`.layouts` -- :func:`generate` writes the data as MARS, DukeMTMC-VideoReID, LS-VID, iLIDS-VID or PRID-2011
  (``LAYOUTS``), atomically, with a record (``synthvid.json``) that :func:`read_record` reads back;
* :mod:`.dataset` -- :class:`SynthVID`, the registered dataset (``build_dataset('synthvid', root)``), which parses a
  folder with its layout's parser and generates missing ones;
* :mod:`.features` -- the colour-histogram features of the no-learning reference matcher.

Everything is deterministic given the seed.

    $ reidzoo synth --layout mars --out /tmp/synth-mars --num-ids 100 --seed 0
    >>> ds = reidzoo.data.build_dataset('synthvid', '/tmp/synth-mars')   # parameters read from the folder
"""
from .dataset import DEFAULT_PARAMS, SynthVID, build_synthvid, synthvid_cache_dir
from .features import colour_histogram_features
from .layouts import GENERATOR_VERSION, LAYOUTS, MARKER, SynthVIDRecord, atomic_folder, generate, read_record
from .render import ACCESSORIES, PALETTE, PATTERNS, Camera, Identity, render_tracklet

__all__ = [
    'SynthVID', 'SynthVIDRecord', 'atomic_folder', 'build_synthvid', 'generate', 'read_record', 'synthvid_cache_dir',
    'colour_histogram_features', 'render_tracklet', 'Identity', 'Camera', 'LAYOUTS', 'MARKER', 'GENERATOR_VERSION',
    'DEFAULT_PARAMS', 'PALETTE', 'PATTERNS', 'ACCESSORIES',
]
