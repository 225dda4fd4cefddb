"""Checkpoints and weights files run no code of theirs unless the user says the file is trusted."""
import pathlib

import pytest
import torch
from conftest import TINY, composed, run_script

from covid_tl.models.backbones import build_backbone
from covid_tl.models.classifier import build_classifier
from covid_tl.models.weights import WeightsError
from covid_tl.tasks.evaluate import evaluate
from covid_tl.runtime.torch_files import check_checkpoint_file, unsafe_globals

SIZE = 32


class TouchOnLoad:
    """Unpickling this creates `path`: what a crafted file could do instead (run any code)."""

    def __init__(self, path):
        self.path = pathlib.Path(path)

    def __reduce__(self):
        return pathlib.Path.touch, (self.path,)


def crafted_checkpoint(path, marker, **save_options):
    """Shaped like a covid-tl checkpoint (state dict, run config), with the payload inside."""
    checkpoint = {"state_dict": {}, "hyper_parameters": {"config": {"threshold": 0.5}}, "payload": TouchOnLoad(marker)}
    torch.save(checkpoint, path, **save_options)
    return path


def assert_refused(proc, marker, trust_key):
    assert not marker.exists(), "the file's code ran"
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"{trust_key}=true" in lines[0], proc.stderr[-2000:]


@pytest.mark.parametrize("task", ["evaluate", "explain", "predict", "export"])
def test_a_crafted_checkpoint_runs_nothing_under_evaluate_explain_predict_export(tmp_path, task):
    """In the process (each script is a line around its task; test_checkpoint_data runs
    predict.py itself for the one error line)."""
    import importlib

    from conftest import composed
    from covid_tl.models.checkpoint import CheckpointError

    marker = tmp_path / "pwned"
    ckpt = crafted_checkpoint(tmp_path / "model.ckpt", marker)
    extra = [f"images={tmp_path / 'scan.png'}"] if task == "predict" else []
    with pytest.raises(CheckpointError) as excinfo:
        getattr(importlib.import_module(f"covid_tl.tasks.{task}"), task)(
            composed(task, f"ckpt_path={ckpt}", *extra), tmp_path / "out")
    message = str(excinfo.value)
    assert not marker.exists(), "the file's code ran"
    assert "\n" not in message and "trust_checkpoint=true" in message
    assert "pathlib" in message  # names what the file would have called


@pytest.mark.slow
def test_a_crafted_weights_file_or_resume_checkpoint_runs_nothing_under_train(tmp_path):
    marker = tmp_path / "pwned"
    weights = crafted_checkpoint(tmp_path / "weights.pth", marker)
    proc = run_script("train.py", f"backbone.weights={weights}", *TINY, f"hydra.run.dir={tmp_path / 'run'}")
    assert_refused(proc, marker, "backbone.trust_weights")
    assert not (tmp_path / "run" / "splits.csv").exists()
    run_dir = tmp_path / "resume"
    (run_dir / "checkpoints").mkdir(parents=True)
    crafted_checkpoint(run_dir / "checkpoints" / "last.ckpt", marker)
    proc = run_script("train.py", "ckpt_path=last", *TINY, f"hydra.run.dir={run_dir}")
    assert_refused(proc, marker, "trust_checkpoint")
    assert not (run_dir / "splits.csv").exists()


def test_a_crafted_file_in_the_legacy_format_runs_nothing_either(tmp_path):
    marker = tmp_path / "pwned"
    path = crafted_checkpoint(tmp_path / "old.pth", marker, _use_new_zipfile_serialization=False)
    with pytest.raises(WeightsError) as excinfo:
        build_classifier({"name": "simple_cnn", "input_size": SIZE, "weights": str(path)})
    assert not marker.exists()
    message = str(excinfo.value)
    assert "\n" not in message and "is not a readable PyTorch weights file" in message
    assert message.endswith("a trusted pickle loads with backbone.trust_weights=true")


def test_a_pickled_model_loads_only_when_trusted(tmp_path):
    torch.manual_seed(0)
    source = build_backbone("simple_cnn", input_size=SIZE)
    torch.save(source.features, tmp_path / "model.pt")  # a whole pickled module, as torchxrayvision ships
    config = {"name": "simple_cnn", "input_size": SIZE, "weights": str(tmp_path / "model.pt")}
    with pytest.raises(WeightsError, match="simple.*backbone.trust_weights=true"):
        build_classifier(config)
    net = build_classifier({**config, "trust_weights": True})
    assert all(torch.equal(net.features.state_dict()[k], v) for k, v in source.features.state_dict().items())


@pytest.mark.slow
def test_covid_tl_checkpoints_hold_only_plain_types(train_run, tmp_path):
    """SGD state, a cosine schedule, a balanced pos_weight and the callbacks' states included."""
    _, run_dir, results = train_run(*TINY, "trainer.max_epochs=2", "optimizer=sgd", "scheduler=cosine",
                                    "model.pos_weight=balanced", "bootstrap=20")
    checkpoints = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert len(checkpoints) == 2 and all(unsafe_globals(path) == [] for path in checkpoints)
    for path in checkpoints:  # bounded, and its run config names only covid-tl, torch.optim and Lightning code
        check_checkpoint_file(path)
    evaluated = evaluate(composed("evaluate", f"ckpt_path={run_dir / results.run['best_checkpoint']}", "bootstrap=20",
                                  run_dir=str(tmp_path / "eval")), tmp_path / "eval")
    assert evaluated.sets["test"]["n"] == results.sets["test"]["n"]
