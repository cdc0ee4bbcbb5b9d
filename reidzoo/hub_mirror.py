"""A real Hugging Face Hub mirror on loopback, serving local git repos: for tests and offline CI jobs.

It runs `olah <https://github.com/vtuber-plan/olah>`_ (a self-hosted Hub mirror, ``pip install olah``) in a
subprocess. olah serves git repositories found under its ``mirrors-path`` as Hub repos: a repo ``org/name`` lives
at ``<mirrors-path>/models/org/name`` (a git work tree). huggingface_hub then talks to it exactly as to the Hub
(``/{org}/{name}/resolve/{revision}/{file}`` with ``X-Repo-Commit`` and ``ETag``, ``/api/models/.../revision/...``,
``.../tree/...``, ``.../refs``), so downloads, revision pinning and the offline cache are exercised for real.

How olah is configured here (olah 0.5.4, read from its ``configs.py`` / ``server_*.py``):

* ``mirrors-path`` is only settable in the TOML config (no CLI flag), so a config file is written;
* ``[accessibility] offline = true``: otherwise every request first asks the upstream Hub whether the repo is
  visible (``ensure_repo_visibility``) and answers 504 when it cannot reach it. Offline, local mirrors are served
  without any upstream call, and the start-up connectivity probe is skipped;
* the upstream (``hf-netloc``) still points at a closed loopback port, so even a code path that ignored the
  offline flag could not reach the internet; the server binds to 127.0.0.1 only.

Known differences from the real Hub (olah behaviour, not fixable by configuration):

* a missing file requested at a *branch* answers 401 ``RepoNotFound`` (the real Hub: 404 ``EntryNotFound``);
  at a full commit hash it answers 404 ``EntryNotFound`` like the Hub;
* it accepts no uploads (``HfApi.create_repo`` / ``upload_folder``): publish with :meth:`LocalHubMirror.publish`;
* ``GET /api/models/{repo}`` without a revision (``HfApi.model_info``) needs the upstream; with a revision it works.

Example:
    >>> with LocalHubMirror(tmp_path / 'hub') as mirror:
    ...     entry = publish_folder_to_mirror(save_dir, mirror, 'org/model')
    ...     path = hf_hub_download('org/model', 'model.safetensors', revision=entry['revision'],
    ...                            endpoint=mirror.endpoint)

From a shell (for a CI job): ``reidzoo mirror ROOT --publish DIR org/name`` prints each published repo's manifest
entry and ``HF_ENDPOINT=...``, then serves until interrupted (Ctrl-C or SIGTERM).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from .hub import manifest_entry

__all__ = ['LocalHubMirror', 'publish_folder_to_mirror', 'serve']

# fixed identity and dates make commits reproducible and independent of the user's git config
_GIT_ENV = {
    'GIT_AUTHOR_NAME': 'reidzoo mirror', 'GIT_AUTHOR_EMAIL': 'mirror@reidzoo.invalid',
    'GIT_COMMITTER_NAME': 'reidzoo mirror', 'GIT_COMMITTER_EMAIL': 'mirror@reidzoo.invalid',
    'GIT_CONFIG_GLOBAL': os.devnull, 'GIT_CONFIG_NOSYSTEM': '1',
}
_GIT_EPOCH = 1_700_000_000  # commit n of a repo is dated epoch + n seconds


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


class LocalHubMirror:
    """An olah Hub mirror on ``127.0.0.1`` serving git repos kept under ``root_dir``.

    Use it as a context manager: the server starts on entry and is always stopped on exit (terminate, then kill),
    also when the body raises. ``endpoint`` is what huggingface_hub needs (``endpoint=`` or ``HF_ENDPOINT``).

    Args:
        root_dir: working folder (created): ``mirrors/models/<org>/<name>`` git repos, olah's config, cache and log.
        host: loopback address to bind.
        port: port to bind; 0 picks a free one.
        start_timeout: seconds to wait for the server to answer.
    """

    def __init__(self, root_dir: Union[str, Path], host: str = '127.0.0.1', port: int = 0,
                 start_timeout: float = 60.0):
        if host not in ('127.0.0.1', 'localhost', '::1'):
            raise ValueError(f'LocalHubMirror binds to loopback only, got host={host!r}.')
        self.root_dir = Path(root_dir).resolve()
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self.mirrors_dir = self.root_dir / 'mirrors'
        self.log_path = self.root_dir / 'olah.log'
        self._proc: Optional[subprocess.Popen] = None
        self._finalizer: Optional[weakref.finalize] = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` (valid once started)."""
        if self._proc is None:
            raise RuntimeError('LocalHubMirror is not running: use it as a context manager or call start().')
        return f'http://{self.host}:{self.port}'

    def repo_dir(self, repo_id: str) -> Path:
        """The git work tree that holds ``repo_id`` (``org/name``)."""
        org, _, name = repo_id.partition('/')
        if not org or not name or '/' in name or org in ('.', '..') or name in ('.', '..'):
            raise ValueError(f'repo_id must be "org/name", got {repo_id!r}.')
        return self.mirrors_dir / 'models' / org / name

    # --- server ---------------------------------------------------------------------------------------------------
    def _write_config(self, port: int) -> Path:
        netloc = f'{self.host}:{port}'
        dead_upstream = f'{self.host}:9'  # the discard port: closed, so nothing is ever fetched upstream
        config = self.root_dir / 'olah.toml'
        config.write_text('\n'.join([
            '[basic]',
            f'host = "{self.host}"',
            f'port = {port}',
            f'repos-path = "{(self.root_dir / "olah-cache").as_posix()}"',
            f'mirrors-path = ["{self.mirrors_dir.as_posix()}"]',
            'hf-scheme = "http"',
            f'hf-netloc = "{dead_upstream}"',
            f'hf-lfs-netloc = "{dead_upstream}"',
            'mirror-scheme = "http"',
            f'mirror-netloc = "{netloc}"',
            f'mirror-lfs-netloc = "{netloc}"',
            '',
            '[accessibility]',
            'offline = true',
            '',
        ]))
        return config

    def _answers(self, port: int) -> bool:
        try:
            with urllib.request.urlopen(f'http://{self.host}:{port}/', timeout=2):  # olah's index page
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer means the server is up
        except OSError:
            return False

    def start(self) -> 'LocalHubMirror':
        """Start olah and wait until it answers; retries on another port if the chosen one was taken."""
        if self._proc is not None:
            return self
        self.root_dir.mkdir(parents=True, exist_ok=True)
        (self.mirrors_dir / 'models').mkdir(parents=True, exist_ok=True)
        attempts = 1 if self.port else 3
        for attempt in range(attempts):
            port = self.port or _free_port(self.host)
            config = self._write_config(port)
            env = {k: v for k, v in os.environ.items() if not k.upper().endswith('_PROXY')}
            env['NO_PROXY'] = env['no_proxy'] = '127.0.0.1,localhost'
            log = open(self.log_path, 'ab')
            proc = subprocess.Popen(
                [sys.executable, '-m', 'olah.server', '--config', str(config),
                 '--log-path', str(self.root_dir / 'logs')],
                cwd=self.root_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
            log.close()
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if self._answers(port):
                    self._proc, self.port = proc, port
                    self._finalizer = weakref.finalize(self, _stop_process, proc)
                    return self
                time.sleep(0.2)
            _stop_process(proc)
            if attempt == attempts - 1:
                tail = self.log_path.read_text(errors='replace')[-3000:] if self.log_path.exists() else ''
                raise RuntimeError(
                    f'olah did not start on {self.host}:{port} within {self.start_timeout:.0f}s '
                    f'(exit code {proc.returncode}). Is olah installed (`pip install olah`)? Log {self.log_path}:\n'
                    f'{tail}')
        raise AssertionError('unreachable')

    def stop(self) -> None:
        """Stop the server (terminate, then kill after 10 s)."""
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_process once
            self._finalizer = None
        self._proc = None

    def __enter__(self) -> 'LocalHubMirror':
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # --- content --------------------------------------------------------------------------------------------------
    def _git(self, repo: Path, *args: str, date: Optional[int] = None) -> str:
        env = dict(os.environ, **_GIT_ENV)
        if date is not None:
            env['GIT_AUTHOR_DATE'] = env['GIT_COMMITTER_DATE'] = f'{date} +0000'
        out = subprocess.run(['git', '-C', str(repo), *args], env=env, check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def publish(self, folder: Union[str, Path], repo_id: str, message: Optional[str] = None) -> str:
        """Commit the files of ``folder`` as the new ``main`` of ``repo_id`` and return the 40-hex commit.

        The repo then holds exactly ``folder``'s files (earlier files not in ``folder`` are removed), and earlier
        commits stay reachable, so a pinned old revision still serves the old files.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f'{folder} is not a folder to publish.')
        repo = self.repo_dir(repo_id)
        if not (repo / '.git').is_dir():
            repo.mkdir(parents=True, exist_ok=True)
            self._git(repo, 'init', '-q', '-b', 'main')
        for child in repo.iterdir():
            if child.name != '.git':
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        for src in folder.rglob('*'):
            rel = src.relative_to(folder)
            if any(part.startswith('.') for part in rel.parts) or not src.is_file():
                continue  # skip hidden files (temp files of atomic writes, .git of a folder that is a repo)
            dst = repo / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        self._git(repo, 'add', '-A')
        count = int(self._git(repo, 'rev-list', '--count', '--all') or 0)
        self._git(repo, 'commit', '-q', '--allow-empty', '--no-verify', '-m',
                  message or f'Publish {folder.name}', date=_GIT_EPOCH + count)
        return self._git(repo, 'rev-parse', 'HEAD')


def publish_folder_to_mirror(save_dir: Union[str, Path], mirror: LocalHubMirror, repo_id: str) -> dict[str, Any]:
    """Publish a folder written by :func:`reidzoo.hub.save_pretrained` to ``mirror`` as ``repo_id``.

    Returns:
        Its manifest entry, pinned to the new commit (as :func:`reidzoo.hub.push_to_hub` returns for the Hub).
    """
    commit = mirror.publish(save_dir, repo_id, message=f'Upload {Path(save_dir).name}')
    return manifest_entry(save_dir, repo_id, commit)


def serve(root: Union[str, Path], *, port: int = 0, publish: Sequence[tuple[str, str]] = ()) -> None:
    """Publish folders to a mirror at ``root``, print each one's manifest entry and ``HF_ENDPOINT=...``, then serve
    until interrupted (Ctrl-C or SIGTERM); the mirror is always stopped. ``reidzoo mirror`` runs this.

    Args:
        root: working folder for the git repos, olah config, cache and log.
        port: port on 127.0.0.1 (0: a free one).
        publish: ``(folder, 'org/name')`` pairs; a save_pretrained folder prints its manifest entry, any other folder
            its commit.
    """
    def interrupt(signum, frame):
        raise KeyboardInterrupt  # so the with-block below stops olah on SIGTERM too
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with LocalHubMirror(root, port=port) as mirror:
            for folder, repo_id in publish:
                if (Path(folder) / 'config.json').is_file():
                    entry = publish_folder_to_mirror(folder, mirror, repo_id)
                else:
                    entry = {'hf_hub_id': repo_id, 'revision': mirror.publish(folder, repo_id)}
                print(json.dumps({repo_id: entry}), flush=True)
            print(f'HF_ENDPOINT={mirror.endpoint}', flush=True)
            try:
                while mirror._proc is not None and mirror._proc.poll() is None:
                    time.sleep(1.0)
            except KeyboardInterrupt:
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)
