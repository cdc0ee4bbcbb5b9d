"""The ``reidzoo`` command line: the top layer, over the library.

Each subcommand is a module of this package with ``add_arguments(parser)`` and ``run(args) -> int``; :data:`COMMANDS`
names them. A command's module (and with it torch, timm, ...) is imported only when that command runs, so
``reidzoo --version`` and ``reidzoo --help`` answer at once.

Errors reach the user as one line, ``reidzoo <command>: error: <message>`` (exit status 1); ``--debug`` anywhere on
the command line shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

__all__ = ['COMMANDS', 'build_parser', 'main']

# command -> (module of this package, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    'list': ('reidzoo.cli.listing', 'list architectures or published weights'),
    'info': ('reidzoo.cli.info', 'show an architecture: cfg, parameters, GFLOPs, published tags'),
    'download': ('reidzoo.cli.download', 'download (and verify) published weights into the Hub cache'),
    'convert': ('reidzoo.cli.convert', "convert an authors' checkpoint to a reidzoo safetensors file"),
    'train': ('reidzoo.cli.train', 'train a model from a recipe'),
    'export': ('reidzoo.cli.export', 'export a finished run as a Hub repo folder'),
    'export-onnx': ('reidzoo.cli.export_onnx', 'export a model to ONNX, verified with onnxruntime'),
    'push': ('reidzoo.cli.push', 'upload an exported folder to the Hub and print its manifest entry'),
    'mirror': ('reidzoo.cli.mirror', 'serve folders as Hub repos on a loopback mirror (olah), for tests and CI'),
    'extract': ('reidzoo.cli.extract', 'embed your own tracklets (folders of frames)'),
    'benchmark': ('reidzoo.cli.benchmark', 'score models on benchmarks with the standard protocols'),
    'synth': ('reidzoo.cli.synth', 'generate SynthVID in a benchmark layout'),
    'index': ('reidzoo.cli.index', 'store gallery embeddings and metadata on disk for search by example'),
    'search': ('reidzoo.cli.search', 'find the gallery tracklets nearest to a query tracklet, with thumbnails'),
    'match': ('reidzoo.cli.match', 'match people across cameras from videos and tracker output'),
}

DEBUG_FLAG = '--debug'


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: ``--version``, ``--debug`` and the command names (their arguments load lazily)."""
    from ..version import __version__
    parser = argparse.ArgumentParser(
        prog='reidzoo', description='Video person re-identification model zoo.',
        epilog=f'Run `reidzoo COMMAND --help` for a command\'s options; add {DEBUG_FLAG} to see tracebacks.')
    parser.add_argument('--version', action='version', version=f'reidzoo {__version__}')
    parser.add_argument(DEBUG_FLAG, action='store_true', help='show the full traceback of an error')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def command_parser(command: str) -> tuple[argparse.ArgumentParser, object]:
    """The parser of one command, with its module's arguments, and the module."""
    module_name, help_text = COMMANDS[command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f'reidzoo {command}', description=(module.__doc__ or help_text).strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    return parser, module


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``reidzoo ARGV``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    if not argv or argv[0] not in COMMANDS:
        parser = build_parser()
        args = parser.parse_args(argv)  # --version / --help / an unknown command exit here with argparse's message
        parser.print_help()
        return 0
    command = argv[0]
    parser, module = command_parser(command)
    args = parser.parse_args(argv[1:])
    args.command = command
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f'reidzoo {command}: interrupted', file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place that turns any error into one actionable line
        if debug:
            raise
        message = str(e).strip() or type(e).__name__
        print(f'reidzoo {command}: error: {message}', file=sys.stderr)
        return 1
