"""Whole-or-nothing file writes: a reader (another DataLoader worker, another run, a report over
a sweep still running) sees a whole file or none, never a half-written one."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

#: The process's umask, read once at import (reading it means setting it, which is not thread-safe).
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomically(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """`write` into a temporary file beside `target`, then renamed into place: a reader sees
    the whole file or none, however many processes fill the cache at once. The file gets the
    mode a plain open would give it (mkstemp's own is owner-only)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_UMASK)
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise



def write_text_atomically(target: Path, text: str) -> None:
    """`text` (UTF-8) into `target` through write_atomically: whole or absent."""
    write_atomically(target, lambda stream: stream.write(text.encode()))
