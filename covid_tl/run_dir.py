"""A run dir across runs: one run writes into it at a time, and a resumed run keeps its history."""
from __future__ import annotations

import csv
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only

from covid_tl.errors import ConfigError

LOCK_NAME = "run.lock"


class RunDirBusyError(ConfigError):
    """Another live run holds the run dir."""


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir/run.lock` for the run; removed at the end.

    An flock, not the file's existence, is the lock: the OS drops it when its process dies, so
    a killed run leaves at most a stale file that the next run takes over. Under DDP rank zero
    holds it for all processes (they share the run dir).
    """
    if rank_zero_only.rank != 0:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    handle = _acquire(path)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()


def _acquire(path: Path) -> IO[str]:
    while True:
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise RunDirBusyError(
                f"another run (pid {holder}) is writing into {path.parent}; wait for it to end or choose another "
                "hydra.run.dir"
            ) from None
        if _is_current(handle, path):
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return handle
        handle.close()  # its holder finished and removed it between our open and our flock: retry


def _is_current(handle: IO[str], path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger, except that a run resumed in its run dir keeps the earlier rows
    of metrics.csv (Lightning's writer deletes the file when it starts)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = HistoryWriter(log_dir=self.log_dir)
        return self._experiment


class HistoryWriter(ExperimentWriter):
    """Writes back the rows of epochs before the first epoch it logs: a resumed run restarts at
    the epoch after its checkpoint, so rows of an epoch cut short by a kill, and the earlier
    run's final test row, are dropped and logged anew."""

    def _check_log_dir_exists(self) -> None:
        """Lightning's version warns and deletes metrics.csv; this one reads it first."""
        self.earlier: list[dict[str, str]] = []
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.earlier = list(csv.DictReader(file))
            self._fs.rm_file(self.metrics_file_path)

    def save(self) -> None:
        if self.earlier and self.metrics:
            epochs = [float(m["epoch"]) for m in self.metrics if "epoch" in m]
            start = min(epochs, default=float("inf"))
            kept = [row for row in self.earlier if row.get("epoch") and float(row["epoch"]) < start]
            self.metrics = [*kept, *self.metrics]
            self.earlier = []
        super().save()
