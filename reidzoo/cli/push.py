"""``reidzoo push DIR --repo-id ORG/NAME``: upload an exported folder and print its ``weights_manifest.json`` entry."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..hub import CONFIG_NAME, push_to_hub
from ..manifest import ManifestError, validate_manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('save_dir', metavar='DIR', help='folder written by save_pretrained / `reidzoo export`')
    parser.add_argument('--repo-id', required=True, metavar='ORG/NAME', help='Hub repo to upload to (created)')
    parser.add_argument('--revision', default='main', help='branch to commit to (default: main)')
    parser.add_argument('--endpoint', default=None, help='Hub URL (default: HF_ENDPOINT or huggingface.co)')
    parser.add_argument('--token', default=None, help='Hub token (default: logged-in token / HF_TOKEN)')
    parser.add_argument('--private', action='store_true', help='create the repo private (default: public)')
    parser.add_argument('--tag', default=None, help='tag of the manifest name arch.tag (default: the dataset)')
    parser.add_argument('--commit-message', default=None, help='commit message (default: one naming the files)')
    # a converted checkpoint records no evaluation: these fill the entry's fields the folder does not record
    parser.add_argument('--dataset', default=None,
                        help="training dataset for the entry if the folder records none, e.g. 'mars' (default: none)")
    parser.add_argument('--protocol', default=None,
                        help='protocol that produced --metrics, e.g. mars_query_in_gallery (default: the folder\'s)')
    parser.add_argument('--metrics', default=None, metavar='JSON',
                        help='measured metrics as fractions, e.g. \'{"mAP": 0.81, "rank1": 0.89}\' (from `reidzoo '
                             'benchmark`; default: the folder\'s)')


def _given(args: argparse.Namespace) -> dict:
    """The entry fields given on the command line (checked before anything is uploaded)."""
    given = {'dataset': args.dataset, 'protocol': args.protocol, 'metrics': None}
    if args.metrics:
        try:
            given['metrics'] = json.loads(args.metrics)
        except json.JSONDecodeError as e:
            raise ValueError(f'--metrics {args.metrics!r} is not JSON ({e}): write e.g. \'{{"mAP": 0.81}}\'.') from None
        if not isinstance(given['metrics'], dict):
            raise ValueError(f'--metrics must be a JSON object of name -> fraction, got {args.metrics!r}.')
    return given


def _fill(entry: dict, given: dict) -> dict:
    """The entry with the fields given on the command line that the folder did not record."""
    for key, value in given.items():
        if value is None:
            continue
        if entry.get(key) is not None and entry[key] != value:
            raise ValueError(f'--{key} {value!r} contradicts the folder\'s config.json ({entry[key]!r}); drop the '
                             f'option or export the folder again.')
        entry[key] = value
    # keep the entry's key order stable (the schema's), whatever was filled in
    order = ['hf_hub_id', 'revision', 'filename', 'sha256', 'num_bytes', 'dataset', 'protocol', 'metrics', 'license',
             'source', 'num_classes', 'pretrained_cfg']
    return {k: entry[k] for k in sorted(entry, key=lambda k: order.index(k) if k in order else len(order))}


def run(args: argparse.Namespace) -> int:
    given = _given(args)
    entry = push_to_hub(args.save_dir, args.repo_id, revision=args.revision, commit_message=args.commit_message,
                        token=args.token, endpoint=args.endpoint, private=args.private)
    entry = _fill(entry, given)
    arch = json.loads((Path(args.save_dir) / CONFIG_NAME).read_text())['architecture']
    name = f'{arch}.{args.tag or entry.get("dataset") or "custom"}'
    print(json.dumps({name: entry}, indent=2))
    try:
        validate_manifest({'schema_version': 1, 'weights': {name: entry}}, f'entry {name}')
    except ManifestError as e:
        print(f'Warning: the entry is not complete yet; fill in the missing fields before adding it:\n{e}',
              file=sys.stderr)
    return 0
