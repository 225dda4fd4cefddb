"""Fold ensembles (train.py cv=k): the out-of-fold operating point, the members' mean, the file
as data, and every script taking the ensemble where it takes a checkpoint. One tiny cv=3 run is
shared by the tests here."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY, composed, run_script
from covid_tl.core.errors import ConfigError
from covid_tl.engine.ensemble import choose_epoch, member_config, pooled_point
from covid_tl.engine.evaluation import requested_operating_point
from covid_tl.models.checkpoint import CheckpointError, load_run
from covid_tl.reporting.results import read_results
from covid_tl.runtime.run_checks import check_cv

pytestmark = pytest.mark.slow

FOLDS = 3


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """(run dir, results) of `train.py cv=3` on tiny phantoms, 2 epochs, youden, calibrated."""
    run_dir = tmp_path_factory.mktemp("ensemble") / "run"
    proc = run_script("train.py", f"hydra.run.dir={run_dir}", *TINY, "trainer.max_epochs=2", f"cv={FOLDS}",
                      "threshold=youden", "calibrate=true", "callbacks.grad_cam=null")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir, read_results(run_dir)


def youden_by_hand(p: np.ndarray, t: np.ndarray) -> float:
    """The highest probability c among those with the largest sensitivity + specificity - 1 when
    p >= c is called COVID-19, then midway to the next lower probability (0 below the lowest)."""
    cuts = np.unique(p)[::-1]
    j = [np.mean(p[t == 1] >= c) - np.mean(p[t == 0] >= c) for c in cuts]
    best = next(i for i, v in enumerate(j) if v >= max(j) - 1e-12)
    below = cuts[best + 1] if best + 1 < len(cuts) else 0.0
    return (cuts[best] + below) / 2


def test_the_threshold_is_youden_on_every_development_film_scored_by_the_member_that_never_saw_it(ensemble):
    run_dir, results = ensemble
    oof = pd.read_csv(run_dir / "oof_predictions.csv")
    splits = pd.read_csv(run_dir / "splits.csv")
    dev = splits[splits.split == "dev"]
    assert sorted(oof.path) == sorted(dev.path)  # each development film once
    assert dict(zip(oof.path, oof.fold)) == dict(zip(dev.path, dev.fold))
    for fold in range(FOLDS):  # member i never trained on fold i's films: they were its val split
        member = pd.read_csv(run_dir / "members" / f"fold_{fold}" / "splits.csv").set_index("path")["split"]
        assert set(member[oof.path[oof.fold == fold]]) == {"val"}
        assert not set(member[oof.path[oof.fold != fold]]) & {"val", "test"}
    point = json.loads((run_dir / "ensemble.json").read_text())["operating_point"]
    targets = (oof.label == "covid").to_numpy().astype(int)
    np.testing.assert_allclose(oof.prob_covid, 1 / (1 + np.exp(-oof.logit / point["temperature"])), atol=1e-9)
    assert point["split"] == "oof" and point["n"] == len(oof) and point["temperature"] != 1.0
    assert point["threshold"] == pytest.approx(youden_by_hand(oof.prob_covid.to_numpy(), targets), abs=1e-9)
    assert results.threshold == pytest.approx(point["threshold"])
    assert [f["fold"] for f in point["per_fold"]] == list(range(FOLDS))


def test_the_ensembles_probability_is_the_members_mean(ensemble):
    run_dir, _ = ensemble
    _, model = load_run(run_dir)
    listing = json.loads((run_dir / "ensemble.json").read_text())
    x = torch.randn(5, model.net.input_spec.channels, model.net.input_spec.size, model.net.input_spec.size)
    temperature = listing["operating_point"]["temperature"]
    raw = []
    for member in listing["members"]:
        net = load_run(run_dir / member["checkpoint"], member=True)[1].net
        net.temperature = 1.0
        with torch.inference_mode():
            raw.append(net(x).numpy())
    expected = np.mean([1 / (1 + np.exp(-z / temperature)) for z in raw], axis=0)
    with torch.inference_mode():
        got = torch.sigmoid(model.net(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert model.threshold == listing["operating_point"]["threshold"]


def test_the_exported_graph_averages_the_members_within_1e_4(ensemble, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    run_dir, _ = ensemble
    # In a fork: after torch.onnx.export in this process, autograd would refuse to run in scripts it forks later.
    proc = run_script("export.py", f"ckpt_path={run_dir}", "format=onnx", f"hydra.run.dir={tmp_path / 'export'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "export" / "model.json").read_text())
    path = tmp_path / "export" / info["model"]
    _, model = load_run(run_dir)
    spec = model.net.input_spec
    x = np.random.default_rng(0).normal(size=(4, spec.channels, spec.size, spec.size)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = torch.sigmoid(model.net(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(session.run([info["output"]["name"]], {info["input"]["name"]: x})[0], expected,
                               atol=1e-4)
    assert info["threshold"] == model.threshold


def test_evaluate_on_the_ensemble_gives_the_runs_test_figures(ensemble, tmp_path):
    run_dir, results = ensemble
    proc = run_script("evaluate.py", f"ckpt_path={run_dir}", f"hydra.run.dir={tmp_path / 'eval'}", "bootstrap=20")
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = read_results(tmp_path / "eval")
    for key in ("n", "auroc", "sensitivity", "specificity"):
        assert again.sets["test"][key] == results.sets["test"][key]
    assert again.threshold == results.threshold
    assert again.run["members"] == FOLDS and f"the ensemble of {FOLDS} members" in proc.stdout


def test_a_member_changed_after_the_ensemble_was_written_is_refused(ensemble, tmp_path):
    run_dir, _ = ensemble
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, symlinks=True)
    listing = json.loads((copy / "ensemble.json").read_text())
    member = copy / listing["members"][1]["checkpoint"]
    member.write_bytes(member.read_bytes() + b"\0")
    with pytest.raises(CheckpointError, match="sha256 differs"):
        load_run(copy)
    listing["members"][1]["checkpoint"] = "../../elsewhere.ckpt"
    (copy / "ensemble.json").write_text(json.dumps(listing))
    with pytest.raises(CheckpointError, match="outside the ensemble's folder"):
        load_run(copy / "ensemble.json")


def test_a_threshold_rule_is_refused_for_an_ensemble(ensemble):
    run_dir, _ = ensemble
    run_cfg, model = load_run(run_dir)
    with pytest.raises(ConfigError, match="pooled out-of-fold"):
        requested_operating_point("youden", run_cfg, model, torch.device("cpu"))
    assert requested_operating_point(0.3, run_cfg, model, torch.device("cpu"))["threshold"] == 0.3


def test_going_on_after_a_crash_keeps_the_finished_members_and_resumes_the_unfinished(ensemble, tmp_path):
    run_dir, results = ensemble
    copy = tmp_path / "again"
    shutil.copytree(run_dir, copy, symlinks=True)
    (copy / "members" / "fold_2" / "results.json").unlink()  # as if it stopped after its last epoch's checkpoint
    kept = {p: p.stat().st_mtime_ns for p in (copy / "members").rglob("*.ckpt") if "fold_2" not in str(p)}
    proc = run_script("train.py", f"hydra.run.dir={copy}", *TINY, "trainer.max_epochs=2", f"cv={FOLDS}",
                      "threshold=youden", "calibrate=true", "callbacks.grad_cam=null", "ckpt_path=last")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert "member 1 of 3" in proc.stderr + proc.stdout and (copy / "members" / "fold_2" / "results.json").is_file()
    assert read_results(copy).threshold == pytest.approx(results.threshold)  # fold 2 resumed after its last epoch


def test_the_epoch_is_the_one_with_the_best_pooled_auroc_the_earliest_on_a_tie():
    # fold 0 ranks perfectly at both epochs, fold 1 only at epoch 1; epoch 2 ties epoch 1 pooled
    rows = []
    for epoch, fold1 in ((0, [0.9, 0.1]), (1, [0.1, 0.9]), (2, [0.1, 0.9])):
        rows += [dict(fold=0, epoch=epoch, target=t, logit=z) for t, z in ((0, -2.0), (1, 2.0))]
        rows += [dict(fold=1, epoch=epoch, target=t, logit=z) for t, z in zip((0, 1), fold1)]
    rows.append(dict(fold=0, epoch=3, target=1, logit=5.0))  # an epoch one member lacks is never chosen
    epoch, curve = choose_epoch(pd.DataFrame(rows))
    # epoch 0: covid logits {2.0, 0.1} vs no-finding {-2.0, 0.9}: 3 of 4 pairs ranked right
    assert curve == {0: 0.75, 1: 1.0, 2: 1.0} and epoch == 1


def test_each_folds_own_cut_is_reported_beside_the_pooled_one():
    frame = pd.DataFrame({"fold": [0, 0, 0, 1, 1, 1], "target": [0, 1, 1, 0, 0, 1],
                          "logit": [-1.0, 1.0, 2.0, 0.5, -0.5, 3.0]})
    point = pooled_point(frame, "youden", False)
    p = 1 / (1 + np.exp(-frame.logit.to_numpy()))
    assert point["threshold"] == pytest.approx(youden_by_hand(p, frame.target.to_numpy()))
    # fold 0 alone: the lowest COVID-19 p is sigmoid(1), the next lower sigmoid(-1)
    assert point["per_fold"][0]["threshold"] == pytest.approx((p[1] + p[0]) / 2)
    assert point["per_fold"][1]["threshold"] == pytest.approx((p[5] + p[3]) / 2)


@pytest.mark.parametrize("overrides, message", [
    (["cv=1"], "at least 2"), (["cv=true"], "whole number"),
    (["cv=3", "data.num_folds=5"], "data.num_folds"), (["cv=3", "ckpt_path=a.ckpt"], "ckpt_path=last"),
])
def test_cv_refuses_what_it_cannot_honour(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_cv(composed("train", *overrides))


def test_a_member_writes_only_in_its_own_folder(tmp_path):
    cfg = composed("train", "cv=4", run_dir=str(tmp_path))
    member = member_config(cfg, 2, tmp_path / "members" / "fold_2")
    text = OmegaConf.to_yaml(member, resolve=True)
    assert str(tmp_path / "members" / "fold_2" / "checkpoints") in text and "${hydra:" not in OmegaConf.to_yaml(member)
    assert (member.data.num_folds, member.data.fold, member.data.fold_split) == (4, 2, "val")
    assert member.cv is None and member.callbacks.model_checkpoint.save_top_k == -1


def test_calibrate_site_refuses_to_fit_a_temperature_to_an_ensembles_mean(ensemble, tmp_path):
    """An ensemble's temperature divides each member's logit, so one fitted to the logit of
    their mean on a site's films would not give back the probabilities it was fitted on."""
    run_dir, _ = ensemble
    proc = run_script("calibrate_site.py", f"ckpt_path={run_dir}", "site=x", "data=synthetic", "calibrate=true",
                      f"hydra.run.dir={tmp_path / 'site'}")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: calibrate=true: a fold ensemble's temperature")
