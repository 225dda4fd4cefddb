"""Shared test helpers: the repository root, a runner for the entry scripts, mask overlap."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # one core per worker, its script runs included
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")

import numpy as np
import pytest

import covid_tl.preprocess.schema  # noqa: F401  (structured configs, before any test composes one)
from covid_tl.results import read_results

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


def run_script(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


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
