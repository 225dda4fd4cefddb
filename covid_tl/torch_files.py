"""Loading torch.save files (checkpoints, weights) without running code from them.

Unpickling runs whatever code a file names. `weights_only=True` loads tensors and plain
containers only, which is all covid-tl's own checkpoints hold (the run config travels as a
plain dict); a file that needs more is refused in one line naming the key that loads it
anyway (`trust_checkpoint=true`, `backbone.trust_weights=true`), for files the user trusts.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from covid_tl.errors import ConfigError

#: The key that loads a checkpoint needing more than weights_only (evaluate, explain, resume).
TRUST_CHECKPOINT = "trust_checkpoint"


def unsafe_globals(path: Path) -> list[str]:
    """The Python objects beyond tensors and plain containers that a torch.save (zip) file names."""
    if not zipfile.is_zipfile(path):
        return []  # an older format: the weights-only load itself refuses what it cannot vouch for
    return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))


def check_loadable(path: Path, trust_key: str, error: type[ConfigError] = ConfigError) -> None:
    """Raise `error` where `path` names objects whose loading could run code: cheap, reads no tensors."""
    unsafe = unsafe_globals(path)
    if unsafe:
        names = ", ".join(unsafe[:3]) + (f" and {len(unsafe) - 3} more" if len(unsafe) > 3 else "")
        raise error(
            f"{path} holds Python objects whose loading can run code ({names}); "
            f"only if you trust where the file comes from, load it with {trust_key}=true"
        )


def load_torch_file(
    path: Path, what: str, trust_key: str, trust: bool = False, error: type[ConfigError] = ConfigError
) -> Any:
    """torch.load on the CPU: weights only unless `trust`; any failure is one `error` line."""
    if not zipfile.is_zipfile(path) and not _is_bare_pickle(path):
        raise error(f"{path} is not a readable {what} (neither the zip archive nor the pickle that torch.save writes)")
    if not trust:
        check_loadable(path, trust_key, error)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as failure:  # noqa: BLE001 - torch raises many types for a file it cannot load
        hint = f"; a trusted pickle loads with {trust_key}=true" if not trust and _is_bare_pickle(path) else ""
        raise error(f"{path} is not a readable {what} ({reason(failure)}){hint}") from None


def _is_bare_pickle(path: Path) -> bool:
    """A pickle outside torch's zip container (torch.save's legacy format, pickle.dump)."""
    with path.open("rb") as handle:
        head = handle.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5  # the PROTO opcode


def reason(error: BaseException) -> str:
    """A short, one-line account of a load failure (torch's weights-only ones span a screen)."""
    text = " ".join(str(error).split())
    unpickler = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
    if unpickler:
        text = unpickler.group(1)
    if len(text) > 160:
        text = text[:157].rsplit(" ", 1)[0] + " ..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
