"""A resumed run keeps its history: the CSV logger that keeps metrics.csv's earlier epochs
(a run dir's claim and lock are covid_tl.runtime.run_guard's)."""
from __future__ import annotations

import csv

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment


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
