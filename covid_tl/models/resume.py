"""Resuming from another run's checkpoint without touching that run: its files are copied into
this run's checkpoint folder and the ModelCheckpoint state inside them points at the copies."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from covid_tl.models.checkpoint import CheckpointError
from covid_tl.core.files import write_atomically
from covid_tl.runtime.torch_files import TRUST_CHECKPOINT, load_torch_file


def adopt_checkpoint(source: Path, folder: Path, weights_only: bool) -> Path:
    """A checkpoint of another run made this run's own: written into `folder` with the files its
    ModelCheckpoint state names (the best and top-k epochs; last.ckpt only when it is `source`),
    that state pointing at the copies. Lightning would otherwise restore the other run's
    best_model_path, and this run would store its operating point into that run's file. The
    other run's files are only read. Each file is written anew, not hard-linked: this run writes
    its best file in place (store_operating_point), and a link would carry that write back."""
    checkpoint = _load(source, weights_only)
    states = _checkpoint_states(checkpoint)
    # Only the other run's own checkpoint folder: a path a checkpoint names is not opened elsewhere.
    named = {Path(p) for state in states for p in _state_files(state, source)
             if Path(p).parent.resolve() == source.parent.resolve() and Path(p).is_file()}
    names = {p.name for p in named} | {source.name}
    for path in named:
        if path.name == source.name:
            continue
        other = _load(path, weights_only)
        _point_into(_checkpoint_states(other), folder, names)
        write_atomically(folder / path.name, lambda stream, other=other: torch.save(other, stream))
    target = folder / source.name
    linked = source.resolve()
    if source.is_symlink() and linked.parent == source.parent.resolve() and linked.name in names:
        target.unlink(missing_ok=True)
        target.symlink_to(linked.name)  # last.ckpt -> the best epoch's file, as in the other run
    else:
        _point_into(states, folder, names)
        write_atomically(target, lambda stream: torch.save(checkpoint, stream))
    return target


def _load(path: Path, weights_only: bool) -> dict[str, Any]:
    """A checkpoint file, bounded and weights-only unless trusted (covid_tl.runtime.torch_files)."""
    return load_torch_file(path, "PyTorch checkpoint", TRUST_CHECKPOINT, not weights_only, CheckpointError)


def _checkpoint_states(checkpoint: dict[str, Any]) -> list[dict[str, Any]]:
    """The ModelCheckpoint states a Lightning checkpoint carries."""
    return [state for state in (checkpoint.get("callbacks") or {}).values()
            if isinstance(state, dict) and "best_model_path" in state and "dirpath" in state]


def _state_files(state: dict[str, Any], source: Path) -> list[str]:
    """Checkpoint files a ModelCheckpoint state names; its last.ckpt only when that is `source`
    (a later epoch's last.ckpt is not the run being resumed)."""
    files = [state.get("best_model_path"), state.get("kth_best_model_path"), *(state.get("best_k_models") or {})]
    last = state.get("last_model_path")
    if last and Path(last).resolve() == source.resolve():
        files.append(last)
    return [f for f in files if f]


def _point_into(states: list[dict[str, Any]], folder: Path, names: set[str]) -> None:
    """Every path of `states` into `folder`; a file not among `names` (not copied) is forgotten."""
    def moved(path: str | None) -> str:
        return str(folder / Path(path).name) if path and Path(path).name in names else ""

    for state in states:
        state["dirpath"] = str(folder)
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            state[key] = moved(state.get(key))
        state["best_k_models"] = {moved(p): v for p, v in (state.get("best_k_models") or {}).items() if moved(p)}
