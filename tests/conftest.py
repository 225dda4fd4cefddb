"""Shared test helpers: the repository root, a runner for the entry scripts, mask overlap."""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # one core per worker, its script runs included
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")

import numpy as np
import pytest

import covid_tl.preprocess.schema  # noqa: F401  (structured configs, before any test composes one)
from covid_tl.reporting.results import read_results

ROOT = Path(__file__).resolve().parents[1]

#: Overrides that make an end-to-end run take seconds on two CPU cores.
TINY = [
    "data.sources.synthetic.n_patients=24",
    "data.sources.synthetic.image_size=48",
    "backbone.input_size=32",
    "trainer.max_epochs=1",
    "data.batch_size=16",
]


#: Python that sets `peak_bytes()`: the peak resident memory of the process running it. VmHWM,
#: not getrusage's ru_maxrss, which Linux carries over from the parent through fork and exec
#: (a test process of 1.7 GB would be measured, not the script).
PEAK_RSS = ("def peak_bytes():\n"
            "    with open('/proc/self/status') as status:\n"
            "        return 1024 * int(next(l.split()[1] for l in status if l.startswith('VmHWM:')))\n")


def run_script(script: str, *args: str, timeout: float = 300, fresh: bool = False) -> subprocess.CompletedProcess:
    """`python <script> <args>` from the repository root: its exit status and output.

    Run in a fork of this test process (which has imported torch, Lightning and covid_tl once),
    as `python` would run it (`__main__`, its own argv, stdout and stderr, exit status), without
    the 8 s of imports a new interpreter spends: most of a tiny run. `fresh=True` starts a new
    interpreter instead, for what a fork cannot show (what a script imports, its peak memory)."""
    if fresh or FRESH or not hasattr(os, "fork"):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
        return subprocess.run(
            [sys.executable, str(ROOT / script), *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
        )
    return _forked(script, args, timeout)


#: COVID_TL_TEST_FRESH=1: every script in a new interpreter (to compare, or where forks misbehave).
FRESH = os.environ.get("COVID_TL_TEST_FRESH") == "1"
#: What a fresh interpreter's `warnings` module does, before pytest records warnings per test:
#: a script in a fork prints its warnings to its stderr as it would on its own.
_WARNINGS = (list(warnings.filters), warnings._showwarnmsg_impl)  # noqa: SLF001


def _forked(script: str, args: tuple[str, ...], timeout: float) -> subprocess.CompletedProcess:
    for heavy in ("covid_tl.tasks.train", "covid_tl.tasks.evaluate"):  # once per test process, before forking
        importlib.import_module(heavy)

    command = [sys.executable, str(ROOT / script), *args]
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            os._exit(_run_as_main(ROOT / script, args, out, err))
        deadline = time.monotonic() + timeout
        while not (status := os.waitpid(pid, os.WNOHANG))[0]:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise subprocess.TimeoutExpired(command, timeout, out.read_text(), err.read_text())
            time.sleep(0.02)
        return subprocess.CompletedProcess(command, os.waitstatus_to_exitcode(status[1]), out.read_text(), err.read_text())


def _run_as_main(script: Path, args: tuple[str, ...], out: Path, err: Path) -> int:
    """In the forked child: run `script` as `__main__` with its own stdout/stderr files; its exit
    status, as the interpreter would give it (sys.exit("message") prints it and gives 1)."""
    import atexit
    import logging
    import runpy
    import traceback

    import torch
    from hydra.core.global_hydra import GlobalHydra

    # torch's OpenMP (libgomp) does not survive a fork once the parent has run a parallel
    # region: the child's next parallel loop waits forever on the parent's threads, which it
    # does not have. One thread never enters OpenMP (two test workers share two cores anyway).
    torch.set_num_threads(1)
    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.stdout = sys.__stdout__ = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    warnings.filters[:], warnings._showwarnmsg_impl = _WARNINGS  # noqa: SLF001
    logging.root.handlers.clear()  # pytest's capture handlers
    GlobalHydra.instance().clear()
    os.chdir(ROOT)
    os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.argv = [str(script), *args]
    atexit._clear()  # noqa: SLF001  (pytest's; the script's own run at the end)
    code = 0
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit:
        if isinstance(exit.code, int) or exit.code is None:
            code = exit.code or 0
        else:
            print(exit.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - as the interpreter reports an uncaught exception
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()  # noqa: SLF001
        logging.shutdown()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def composed(config_name: str, *overrides: str, run_dir: str = "/tmp/covid-tl-run"):
    """A script's config as its task sees it (the `hydra:` resolver answering, no `hydra` key)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name, overrides=[f"hydra.run.dir={run_dir}", *overrides], return_hydra_config=True)
    cfg.hydra.runtime.output_dir = run_dir
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory) -> Path:
    """A covid-tl checkpoint shaped as training saves it, made in seconds without training (for
    tests of loading, not of a model): the TINY run config resolved, threshold 0.4, an Adam
    state; untrained weights."""
    return untrained_checkpoint_file(tmp_path_factory.mktemp("untrained") / "legit.ckpt", *TINY, "threshold=0.4")


def untrained_checkpoint_file(path: Path, *overrides: str) -> Path:
    """A checkpoint as training saves it of the train config with `overrides` (its `threshold`
    the model's), untrained weights: for tests of what reads a checkpoint's config and data."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from covid_tl.models.classifier import build_classifier

    cfg = composed("train", *overrides)
    net = build_classifier(cfg.backbone, load_pretrained=False)
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    model = instantiate(cfg.model)(net, optimizer=instantiate(cfg.optimizer),
                                   config=OmegaConf.to_container(cfg, resolve=True), threshold=cfg.threshold)
    torch.save({"epoch": 0, "global_step": 1, "state_dict": model.state_dict(), "optimizer_states": [optimizer.state_dict()],
                "hyper_parameters": dict(model.hparams), "pytorch-lightning_version": "2"}, path)
    return path


@pytest.fixture
def train_run(tmp_path):
    """Run train.py into a fresh run dir; returns (completed process, run dir, results)."""

    def run(*overrides: str, timeout: float = 300):
        run_dir = tmp_path / "run"
        proc = run_script("train.py", f"hydra.run.dir={run_dir}", *overrides, timeout=timeout)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        return proc, run_dir, read_results(run_dir)

    return run


def _xray_mini() -> Path:
    return Path(os.environ.get("COVID_TL_XRAY_MINI", ROOT.parent / "shared" / "data" / "xray-mini"))


XRAY_MINI = _xray_mini()
needs_xray_mini = pytest.mark.skipif(
    not (XRAY_MINI / "manifest.csv").is_file(),
    reason=f"xray-mini not found at {XRAY_MINI} (set COVID_TL_XRAY_MINI to its folder)",
)
XRAY_VIEWS = Path(os.environ.get("COVID_TL_XRAY_VIEWS", XRAY_MINI.parent / "xray-views"))
needs_xray_views = pytest.mark.skipif(
    not (XRAY_MINI / "manifest.csv").is_file() or not (XRAY_VIEWS / "manifest.csv").is_file(),
    reason=f"xray-mini and xray-views not both found at {XRAY_MINI} and {XRAY_VIEWS} "
           "(set COVID_TL_XRAY_MINI and COVID_TL_XRAY_VIEWS to their folders)",
)


def mask_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union (1.0 when both are empty)."""
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


PUBLISHED_MINI = Path(os.environ.get("COVID_TL_PUBLISHED_MINI", ROOT.parent / "shared" / "data" / "published-mini"))
needs_published_mini = pytest.mark.skipif(
    not (PUBLISHED_MINI / "nih" / "Data_Entry_2017.csv").is_file(),
    reason=f"published-mini not found at {PUBLISHED_MINI} (set COVID_TL_PUBLISHED_MINI to its folder)",
)


@pytest.fixture
def without_pydicom(monkeypatch):
    """Imports of pydicom fail, as on an install without the dicom extra."""
    import builtins

    real_import = builtins.__import__

    def no_pydicom(name, *args, **kwargs):
        if name.startswith("pydicom"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pydicom)


#: The files with the longest runs, started first: with a file per worker at a time, a long
#: file collected last (test_shortcut_finding) would leave the other worker idle at the end.
LONGEST_FIRST = ("test_shortcut_finding.py", "test_runs.py", "test_published_data.py", "test_train_e2e.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept otherwise
