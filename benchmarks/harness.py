"""What every benchmark shares, so that none of them re-reads a log or a file layout by hand:
train.py, evaluate.py and audit.py runs with overrides, their results through the results model
(covid_tl.reporting.results.read_results), pooled out-of-fold figures computed in one place, and where
the shared data is. A run's wall time is the one results.json records (`run.wall_time_s`);
the time of trainer.fit alone, which results.json does not record, is timed around
Trainer.fit in this process.

Runs happen in this process through Hydra's compose API: the task function gets the config
`python train.py <overrides>` would give it (after the same checks), without a second Python
start-up per run, which is what lets a benchmark's `--tiny` mode finish in seconds. Each run's
console output goes to `<run dir>/benchmark.log`.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import platform
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from covid_tl.reporting.results import Results, read_results

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
#: train.py overrides that make a run take seconds on 2 CPU cores: 1 epoch of the small CNN on
#: few, small phantoms, a short bootstrap (the base of the `--tiny` modes on phantoms).
TINY = ["data.sources.synthetic.n_patients=24", "data.sources.synthetic.image_size=48", "backbone.input_size=32",
        "trainer.max_epochs=1", "data.batch_size=16", "bootstrap=20"]
#: The same on xray-mini's films (the `--tiny` modes of benchmarks that need real films).
TINY_XRAY_MINI = ["backbone=simple_cnn", "backbone.input_size=32", "trainer.max_epochs=1", "bootstrap=20"]


def shared_data(name: str, variable: str) -> Path | None:
    """A shared data folder ($`variable`, else ../shared/data/`name` beside the repository), or
    None when it holds no manifest."""
    folder = Path(os.environ.get(variable, ROOT.parent / "shared" / "data" / name))
    return folder if (folder / "manifest.csv").is_file() else None


def xray_mini() -> Path | None:
    """The xray-mini folder ($COVID_TL_XRAY_MINI), or None."""
    return shared_data("xray-mini", "COVID_TL_XRAY_MINI")


def xray_views() -> Path | None:
    """The xray-views folder ($COVID_TL_XRAY_VIEWS), or None."""
    return shared_data("xray-views", "COVID_TL_XRAY_VIEWS")


def xray_mini_or_skip() -> Path | None:
    """xray_mini(), saying why the benchmark is skipped when it is absent."""
    root = xray_mini()
    if root is None:
        print("skipped: xray-mini not found (set COVID_TL_XRAY_MINI to its folder)")
    return root


def xray_mini_data(root: Path) -> list[str]:
    """Overrides for `data=xray_mini` at `root`, wherever the command runs from."""
    return ["data=xray_mini", f"data.path={root / 'manifest.csv'}"]


def machine() -> str:
    """The line every benchmark prints first: figures mean little without it."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads{load}")


@dataclass
class Run:
    """One finished train.py run: its directory, its results.json record, and the seconds of
    trainer.fit (features included on the fast path), timed around it in this process."""

    directory: Path
    results: Results
    fit_s: float | None

    @property
    def wall_s(self) -> float:
        """The whole run, start to results written, as the run itself recorded it."""
        return float(self.results.run["wall_time_s"])

    def predictions(self, split: str = "test") -> pd.DataFrame:
        """Rows of predictions.csv for one set (path, label, patient_id, prob_covid, ...)."""
        frame = pd.read_csv(self.directory / "predictions.csv")
        return frame[frame["set"] == split]


def composed(config_name: str, overrides: Sequence[str], run_dir: Path):
    """The config a script's task function sees for `overrides`, its output dir `run_dir`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    importlib.import_module("covid_tl.preprocess.schema")  # structured configs, registered before composing
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=[*overrides, f"hydra.run.dir={run_dir}"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as the task function of a real run sees it
    return cfg


@contextlib.contextmanager
def _quiet(run_dir: Path) -> Iterator[None]:
    """The run's console output (tables, progress bars, warnings) into run_dir/benchmark.log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with open(run_dir / "benchmark.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    except Exception as error:
        error.add_note(f"the run's console output: {run_dir / 'benchmark.log'}")
        raise


@contextlib.contextmanager
def _fit_timer(spent: list[float]) -> Iterator[None]:
    """Seconds of every Trainer.fit inside the block, appended to `spent` (results.json records
    only the whole run's wall time)."""
    import pytorch_lightning as pl

    original = pl.Trainer.fit

    def fit(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    pl.Trainer.fit = fit
    try:
        yield
    finally:
        pl.Trainer.fit = original


def train(overrides: Sequence[str], run_dir: Path, reuse: bool = False) -> Run:
    """`python train.py <overrides> hydra.run.dir=<run_dir>`; with `reuse`, a run dir that
    already holds results.json is read instead of trained again (fit_s then None)."""
    run_dir = Path(run_dir)
    if reuse and (run_dir / "results.json").is_file():
        return Run(run_dir, read_results(run_dir), None)
    from covid_tl.runtime.run_checks import check_train_config
    from covid_tl.tasks.train import train as train_task

    cfg = composed("train", overrides, run_dir)
    check_train_config(cfg)
    spent: list[float] = []
    with _quiet(run_dir), _fit_timer(spent):
        train_task(cfg, run_dir)
    return Run(run_dir, read_results(run_dir), sum(spent))


def evaluate(overrides: Sequence[str], run_dir: Path) -> Results:
    """`python evaluate.py <overrides> hydra.run.dir=<run_dir>`: its results.json record."""
    from covid_tl.tasks.evaluate import evaluate as evaluate_task

    cfg = composed("evaluate", overrides, run_dir)
    with _quiet(Path(run_dir)):
        evaluate_task(cfg, Path(run_dir))
    return read_results(run_dir)


def audit(overrides: Sequence[str], run_dir: Path) -> dict:
    """`python audit.py <overrides> hydra.run.dir=<run_dir>`: its audit.json, read back (plain
    JSON values, as a reader of the file sees them)."""
    from covid_tl.tasks.audit import audit as audit_task

    cfg = composed("audit", overrides, run_dir)
    with _quiet(Path(run_dir)):
        audit_task(cfg, Path(run_dir))
    return json.loads((Path(run_dir) / "audit.json").read_text())


def calibrate_site(overrides: Sequence[str], run_dir: Path) -> dict:
    """`python calibrate_site.py <overrides> hydra.run.dir=<run_dir>`: its site_profile.json, read back."""
    from covid_tl.tasks.calibrate_site import calibrate_site as calibrate_task

    cfg = composed("calibrate_site", overrides, run_dir)
    with _quiet(Path(run_dir)):
        calibrate_task(cfg, Path(run_dir))
    return json.loads((Path(run_dir) / "site_profile.json").read_text())


def audit_numbers(record: dict, where: str | None = None) -> dict:
    """The audit figures every benchmark reports, from one set of the audit (`where`; default
    its first, the test split): lungs-removed and lungs-only AUROC, and the share of no-finding
    films called COVID-19 once COVID-19 marks are pasted on (`flips_to_covid`); with the probe
    over all sets, `source_probe` and `view_probe`: how well the model's features tell the sources
    (views) of no-finding films apart. Each None where the test was skipped."""
    from covid_tl.core.labels import LABELS

    first = where or next(iter(record.get("sets") or {}), None)
    done = [t for t in record["tests"] if "skipped" not in t]
    rows = [t for t in done if t["set"] == first]

    def row(test: str, metric: str | None = None, among: list | None = None) -> dict:
        return next((t for t in (rows if among is None else among) if t["test"] == test and metric in (None, t["metric"])), {})

    numbers = {"set": first}
    for key, found in (("lungs_removed", row("lungs removed")), ("lungs_only", row("lungs only")),
                       ("flips_to_covid", row("mark transplant", f"{LABELS[0]} -> {LABELS[1]}")),
                       ("source_probe", row(f"source probe ({LABELS[0]})", among=done)),
                       ("view_probe", row(f"view probe ({LABELS[0]})", among=done))):
        numbers[key], numbers[f"{key}_ci95"] = found.get("value"), found.get("ci95")
    return numbers


def last_override(overrides: Sequence[str], key: str, default: str | None = None) -> str | None:
    """The value the last `key=...` of `overrides` gives (Hydra's last one wins), else `default`."""
    values = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == key]
    return values[-1] if values else default


def pooled_out_of_fold(folds: Sequence[pd.DataFrame], threshold: float = 0.5, resamples: int = 1000,
                       seed: int = 0) -> dict:
    """Every figure of the folds' test predictions pooled (each image once, over all folds),
    AUROC with a 95% interval over patients (`resamples=0`: none): one ranking of every image, not a mean of fold
    AUROCs, which would hide that fold models score on different scales."""
    from covid_tl.stats.metrics import bootstrap_intervals, summarize

    frame = pd.concat(list(folds), ignore_index=True)
    if frame["path"].duplicated().any():
        twice = frame.loc[frame["path"].duplicated(), "path"].iloc[0]
        raise ValueError(f"{twice} is in the test split of more than one fold: folds must not overlap")
    targets = (frame["label"] == "covid").to_numpy().astype(int)
    probabilities = frame["prob_covid"].to_numpy(dtype=float)
    result = summarize(targets, probabilities, threshold)
    result["auroc_ci95"] = bootstrap_intervals(targets, probabilities, frame["patient_id"].astype(str).to_numpy(),
                                               threshold, resamples, seed)["auroc"] if resamples else None
    return result
