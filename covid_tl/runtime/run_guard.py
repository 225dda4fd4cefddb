"""A run dir is one run's own: a run starts only in an empty dir (or resumes its own), and one
run writes into it at a time. Light on purpose (no torch, no Lightning): Hydra calls the guard
before anything is written, and a refusal should take a second, not an import of Lightning."""
from __future__ import annotations

import atexit
import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from covid_tl.core.errors import ConfigError

#: Where launchers put a process's global rank (Lightning's rank_zero_only reads the same).
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def _rank() -> int:
    """This process's rank: 0 unless a launcher (Lightning's DDP, SLURM) says otherwise."""
    for name in RANK_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


LOCK_NAME = "run.lock"


class RunDirBusyError(ConfigError):
    """Another live run holds the run dir."""


class RunDirUsedError(ConfigError):
    """The run dir holds an earlier run's files."""


@contextmanager
def run_lock(run_dir: Path, key: str = "hydra.run.dir") -> Iterator[None]:
    """Hold `run_dir/run.lock` for the run; removed at the end.

    An flock, not the file's existence, is the lock: the OS drops it when its process dies, so
    a killed run leaves at most a stale file that the next run takes over. Under DDP rank zero
    holds it for all processes (they share the run dir).
    """
    if _rank() != 0:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    handle = _acquire(path, key)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()


def _acquire(path: Path, key: str) -> IO[str]:
    while True:
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise _busy(path, holder, key) from None
        if _is_current(handle, path):
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return handle
        handle.close()  # its holder finished and removed it between our open and our flock: retry


def _busy(path: Path, holder: str, key: str) -> RunDirBusyError:
    return RunDirBusyError(f"another run (pid {holder or '?'}) is writing into {path.parent}; wait for it to end or "
                           f"choose another {key}")


def _is_current(handle: IO[str], path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def check_not_held(run_dir: Path, key: str = "hydra.run.dir") -> None:
    """RunDirBusyError when a live run holds `run_dir/run.lock`; writes nothing (a stale lock
    file is left as it is)."""
    path = run_dir / LOCK_NAME
    try:
        handle = path.open("r")
    except (FileNotFoundError, NotADirectoryError):
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file closes
        except BlockingIOError:
            raise _busy(path, handle.read().strip(), key) from None


def earlier_files(run_dir: Path) -> list[str]:
    """What `run_dir` holds of an earlier run, sorted by name (nothing when it does not exist).
    A lock file is no run's output, and neither are Hydra's own `.hydra/` and job log alone:
    they are what a command refused by a config check leaves, and the corrected command may
    use the dir (the refusal lost nothing)."""
    if not run_dir.exists():
        return []
    if not run_dir.is_dir():
        return [run_dir.name]
    found = sorted(entry.name for entry in run_dir.iterdir() if entry.name != LOCK_NAME)
    hydra_own = all(name == ".hydra" or (name.endswith(".log") and (run_dir / name).is_file()) for name in found)
    return [] if hydra_own else found


def check_unused(run_dir: Path, key: str = "hydra.run.dir", resumable: bool = False) -> None:
    """RunDirUsedError when `run_dir` holds files: a run never writes over another's."""
    found = earlier_files(run_dir)
    if found:
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        resume = " or resume the run in it with ckpt_path=last" if resumable else ""
        raise RunDirUsedError(f"{run_dir} already holds a run ({shown}); choose another {key}{resume}")


def resumes_in(cfg: DictConfig, run_dir: Path) -> bool:
    """The config resumes the run of `run_dir`: ckpt_path=last, or a checkpoint inside it."""
    ckpt_path = OmegaConf.select(cfg, "ckpt_path", default=None)
    if ckpt_path is None:
        return False
    if str(ckpt_path) == "last":
        return True
    return Path(str(ckpt_path)).expanduser().resolve().is_relative_to(run_dir.resolve())


class RunDirGuard(Callback):
    """Hydra callback (`hydra.callbacks` of every entry point's config) that claims the run dir
    before Hydra writes `.hydra/` into it: a dir that a live run holds, or that holds an earlier
    run's files, stops the command with one `error:` line and is left exactly as it was.
    Otherwise `run.lock` is held until the run ends (or the process exits).

    The dir is `output_dir` where the config has one set, else `hydra.run.dir`; a multirun
    claims `hydra.sweep.dir` as a whole, its jobs' numbered dirs inside it being new. With
    `resumable` (training), `ckpt_path=last` or a checkpoint inside the dir continues its run.
    Under DDP the other processes (Lightning starts them with rank zero's run dir) claim nothing.
    """

    def __init__(self, resumable: bool = False) -> None:
        self.resumable = resumable
        self.held = ExitStack()  # the run_lock this process holds

    def __getstate__(self) -> dict[str, Any]:
        """A launcher that pickles the callbacks (joblib, submitit) gets no lock: the sweep's
        process holds it."""
        return {"resumable": self.resumable}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        output_dir = OmegaConf.select(config, "output_dir", default=None)
        self.claim(config, Path(str(output_dir or config.hydra.run.dir)), "output_dir" if output_dir else "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.claim(config, Path(str(config.hydra.sweep.dir)), "hydra.sweep.dir")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.release()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.release()

    def claim(self, config: DictConfig, run_dir: Path, key: str) -> None:
        """Check, then lock, then check again (a run may have come and gone in between).
        Hydra turns a callback's exception into a warning: a refusal exits here."""
        if _rank() != 0:
            return
        run_dir = run_dir.expanduser().absolute()
        resuming = self.resumable and resumes_in(config, run_dir)
        try:
            check_not_held(run_dir, key)
            if not resuming:
                check_unused(run_dir, key, self.resumable)
            self.held.enter_context(run_lock(run_dir, key))
            atexit.register(self.release)  # a task that exits with an error line skips on_run_end
            if not resuming:
                check_unused(run_dir, key, self.resumable)
        except ConfigError as error:
            self.release()
            sys.exit(f"error: {error}")

    def release(self) -> None:
        self.held.close()  # a second call finds nothing to release
