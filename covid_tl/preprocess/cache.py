"""On-disk cache of deterministic preprocessing results, keyed by file content and config.

Several DataLoader workers and several runs may fill the same cache at once: every entry is
written to a temporary file and renamed into place, so a reader sees a whole entry or none.
A changed preprocessing config (or algorithm version) lands in another folder, and every entry
records the content hash of its image, so a stale entry, or one of another image put in its
place, is never read: it is computed again.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from covid_tl.core.files import write_atomically
from covid_tl.preprocess.pipeline import Prepared

#: Bump when a preprocessing algorithm, or the entry format, changes in a way the config does not show.
ALGORITHM_VERSION = 2


def config_digest(config: Mapping[str, Any]) -> str:
    text = json.dumps({"config": config, "version": ALGORITHM_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def content_hash(path: str | Path) -> str:
    """sha256 of a file's bytes: what names an image in every cache, wherever it lies."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


_NPZ_READ = threading.Lock()


class PreprocessCache:
    """Prepared images stored as .npz files under `directory/<config digest>/<content hash>.npz`,
    each holding the image, its crop box and the content hash (`key`) of the file it came from."""

    def __init__(self, directory: str | Path, config: Mapping[str, Any]) -> None:
        self.directory = Path(directory).expanduser() / config_digest(config)
        self._keys: dict[tuple[str, int, int], str] = {}

    def file_key(self, path: str | Path) -> str:
        """Hash of the file's bytes (remembered per path, size and mtime within a process)."""
        stat = os.stat(path)
        memo = (str(path), stat.st_size, stat.st_mtime_ns)
        if memo not in self._keys:
            self._keys[memo] = content_hash(path)
        return self._keys[memo]

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npz"

    def get(self, key: str) -> Prepared | None:
        """The entry of the file whose content hash is `key`; None when there is none, or when
        the entry there is damaged or records another file (either is computed again)."""
        try:
            # One reader at a time: np.load parses each array's header with ast.literal_eval, which
            # CPython 3.11 can fail with "AST constructor recursion depth mismatch" when threads
            # parse at once (cpython#106905), and validation reads entries in a thread pool.
            with _NPZ_READ, np.load(self._path(key), allow_pickle=False) as stored:
                if str(stored["key"]) != key:
                    return None
                return Prepared(stored["image"], tuple(int(v) for v in stored["box"]))
        except (FileNotFoundError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
            return None

    def put(self, key: str, prepared: Prepared) -> None:
        write_atomically(self._path(key), lambda stream: np.savez(
            stream, image=np.ascontiguousarray(prepared.image), box=np.asarray(prepared.box), key=np.asarray(key)))
