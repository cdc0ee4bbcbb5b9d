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


def run(args: argparse.Namespace) -> int:
    entry = push_to_hub(args.save_dir, args.repo_id, revision=args.revision, commit_message=args.commit_message,
                        token=args.token, endpoint=args.endpoint, private=args.private)
    arch = json.loads((Path(args.save_dir) / CONFIG_NAME).read_text())['architecture']
    name = f'{arch}.{args.tag or entry.get("dataset") or "custom"}'
    print(json.dumps({name: entry}, indent=2))
    try:
        validate_manifest({'schema_version': 1, 'weights': {name: entry}}, f'entry {name}')
    except ManifestError as e:
        print(f'Warning: the entry is not complete yet; fill in the missing fields before adding it:\n{e}',
              file=sys.stderr)
    return 0
