"""predict.py, export.py and the model card, end to end on one tiny training run."""
import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import ROOT, TINY, composed, run_script
from covid_tl.data.images import read_xray
from covid_tl.data.synthetic.source import SyntheticSource
from covid_tl.core.errors import ConfigError
from covid_tl.models.checkpoint import load_run
from covid_tl.models.classifier import build_classifier
from covid_tl.preprocess.model_input import to_model_input
import covid_tl.tasks.predict as task
from covid_tl.tasks.predict import predict
from covid_tl.reporting.results import read_results

pytestmark = pytest.mark.slow

THRESHOLD = 0.45  # not the default, so a call at 0.5 would show


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run dir, results.json, best checkpoint) of one tiny run shared by every test here."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    proc = run_script("train.py", f"hydra.run.dir={run_dir}", *TINY, f"threshold={THRESHOLD}", "calibrate=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(run_dir)
    return run_dir, results, run_dir / results.run["best_checkpoint"]


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """20 phantom films (PNG and grey JPEG, sizes varying) and two broken files beside them:
    a PNG damaged inside (header and end intact: only decoding finds it) and a cut JPEG."""
    folder = tmp_path_factory.mktemp("scans")
    source = SyntheticSource(n_patients=10, image_size=64, seed=3)
    good = []
    for i, row in enumerate(source.frame().head(20).to_dict("records")):
        path = folder / f"film{i:02d}.{'jpg' if i % 4 == 3 else 'png'}"
        assert cv2.imwrite(str(path), source.load_image(row))
        good.append(str(path))
    data = bytearray((folder / "film00.png").read_bytes())
    data[60:90] = bytes(30)  # inside the first IDAT chunk
    (folder / "damaged.png").write_bytes(bytes(data))
    jpeg = (folder / "film03.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    return folder, sorted(good)


def reference(ckpt, paths):
    """Probabilities as evaluate.py computes them: read, resize, normalise, the network, sigmoid."""
    _, model = load_run(ckpt)
    batch = torch.stack([torch.from_numpy(to_model_input(read_xray(p), model.net.input_spec)) for p in paths])
    with torch.inference_mode():
        return torch.sigmoid(model.net(batch)).numpy()


def test_model_card_names_the_sources_the_threshold_and_the_test_metrics_of_results_json(trained):
    run_dir, results, _ = trained
    card = (run_dir / "model_card.md").read_text()
    test = results.sets["test"]
    cells = [f"{test[m]:.3f} [{test[m + '_ci95'][0]:.3f}, {test[m + '_ci95'][1]:.3f}]"
             for m in ("sensitivity", "specificity", "accuracy")]
    auroc = test["bootstrap_ci95"]["auroc"]
    cells.append(f"{test['auroc']:.3f} [{auroc[0]:.3f}, {auroc[1]:.3f}]")
    assert f"| test | {test['n']} | " + " | ".join(cells) + " |" in card.splitlines()
    assert f"at or above **{THRESHOLD}**" in card and "`synthetic`" in card and "not for diagnosis" in card
    assert "Source confounding" in card and "0.99 AUROC" in card
    # CAM scores as logged in metrics.csv at the best (here also last) epoch.
    logged = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["cam/artifact_fraction"]).iloc[-1]
    assert results.cam_scores()["artifact_fraction"] == pytest.approx(logged["cam/artifact_fraction"])
    assert (f"| {results.run['best_epoch']} (best, last) | {logged['cam/artifact_fraction']:.3f} | "
            f"{logged['cam/lung_area']:.3f} | {logged['cam/lung_fraction']:.3f} |") in card


def with_threshold(ckpt, threshold, path):
    """A copy of the checkpoint whose operating point holds another threshold."""
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    checkpoint["operating_point"]["threshold"] = threshold
    torch.save(checkpoint, path)
    return path


def test_the_fitted_temperature_divides_every_logit_the_checkpoint_gives(trained, scans):
    _, results, ckpt = trained
    point = results.operating_point
    assert point["temperature"] != 1.0 and point["threshold"] == THRESHOLD and point["split"] == "val"
    assert point["val_nll"]["after"] <= point["val_nll"]["before"]
    _, model = load_run(ckpt)
    assert model.net.temperature == pytest.approx(point["temperature"])
    batch = torch.stack([torch.from_numpy(to_model_input(read_xray(p), model.net.input_spec)) for p in scans[1][:4]])
    with torch.inference_mode():
        calibrated = model.net(batch)
        model.net.temperature = 1.0
        raw = model.net(batch)
    torch.testing.assert_close(calibrated, raw / point["temperature"])


def test_predict_streams_every_readable_file_and_lists_the_broken_ones(trained, scans, tmp_path):
    folder, good = scans
    expected = reference(trained[2], good)
    # A threshold between the 10th and 11th probability: exactly 10 files are called covid.
    threshold = float(np.median(expected))
    ckpt = with_threshold(trained[2], threshold, tmp_path / "median.ckpt")
    out = tmp_path / "predict"
    proc = run_script("predict.py", f"ckpt_path={ckpt}", f"images={folder}/*", "cams=true", "cam.tile=64",
                      "batch_size=8", "num_workers=2", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(out / "predictions.csv")
    assert list(table["path"]) == good and list(table.columns) == ["path", "prob_covid", "predicted", "cam"]
    np.testing.assert_allclose(table["prob_covid"], expected, atol=1e-6)
    assert list(table["predicted"]) == ["covid" if p >= threshold else "no_finding" for p in expected]
    assert (table["predicted"] == "covid").sum() == 10
    overlay = cv2.imread(str(out / table["cam"].iloc[0]))
    assert overlay.shape[1:] == (64, 3) and overlay.shape[0] > 64  # caption band above the 64 px picture
    # Sorted, the files are cut.jpg (1), damaged.png (2), film00.png (3), ...
    bad = pd.read_csv(out / "bad_rows.csv")
    assert list(zip(bad["path"].map(lambda p: p.split("/")[-1]), bad["line"], bad["kind"])) == [
        ("cut.jpg", 1, "corrupt"), ("damaged.png", 2, "undecodable")]
    assert "2 of 22 file(s) left out" in proc.stdout + proc.stderr and "20 image(s)" in proc.stdout


def predict_config(ckpt, images, *overrides):
    return composed("predict", f"ckpt_path={ckpt}", f"images='{images}'", "num_workers=0", *overrides)


def test_predict_refuses_before_work_when_no_file_can_be_used(trained, scans, tmp_path):
    _, _, ckpt = trained
    folder, _ = scans
    with pytest.raises(ConfigError, match="none of the 2 file"):
        predict(predict_config(ckpt, f"{folder}/[cd]*"), tmp_path / "a")
    with pytest.raises(ConfigError, match="matches no file"):
        predict(predict_config(ckpt, f"{folder}/*.tif"), tmp_path / "b")
    with pytest.raises(ConfigError, match="cam.method='nope' does not fit CamOptions's method"):
        predict(predict_config(ckpt, f"{folder}/*", "cams=true", "cam.method=nope"), tmp_path / "c")
    assert not (tmp_path / "c").exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_runs_without_covid_tl_and_matches_the_checkpoint(trained, scans, tmp_path, fmt):
    """The exported file, fed as model.json says with OpenCV and numpy only, gives the
    checkpoint's probabilities within 1e-4, one image at a time and all at once."""
    _, _, ckpt = trained
    _, good = scans
    # Not in this process: after torch.onnx.export here, autograd refuses to run in any script
    # this test process forks later (torch's autograd-and-fork guard). And not in a fork either:
    # the torchscript export hung in a forked child in 2 of 3 runs of the whole suite on
    # 2026-12-06 (never with this file alone); a new interpreter inherits no threads or locks.
    proc = run_script("export.py", f"ckpt_path={ckpt}", f"format={fmt}", f"hydra.run.dir={tmp_path}", fresh=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "model.json").read_text())
    path = tmp_path / info["model"]
    assert info["temperature"] == trained[1].operating_point["temperature"] != 1.0
    assert info["threshold"] == THRESHOLD and info["labels"] == ["no_finding", "covid"] and info["model"] == path.name
    assert info["preprocessing"] == {"crop": None, "inpaint": None} and info["versions"]["covid-tl"]

    size, mean, std = info["input"]["size"], np.float32(info["input"]["mean"]), np.float32(info["input"]["std"])
    def prepared(file):
        image = cv2.imread(file, cv2.IMREAD_GRAYSCALE)
        shrink = image.shape[0] > size or image.shape[1] > size
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        channels = np.repeat(image[None].astype(np.float32) / 255, info["input"]["channels"], axis=0)
        return (channels - mean[:, None, None]) / std[:, None, None]

    batch = np.stack([prepared(f) for f in good]).astype(np.float32)
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        run = lambda x: session.run([info["output"]["name"]], {info["input"]["name"]: x})[0]  # noqa: E731
    else:
        scripted = torch.jit.load(str(path))
        run = lambda x: scripted(torch.from_numpy(x)).detach().numpy()  # noqa: E731
    expected = reference(ckpt, good)
    np.testing.assert_allclose(run(batch), expected, atol=1e-4)
    np.testing.assert_allclose(run(batch[:1]), expected[:1], atol=1e-4)
    assert info["largest_difference_to_checkpoint"] <= 1e-4


def test_a_cam_failure_costs_the_pictures_not_the_predictions(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("hook failed")

    monkeypatch.setattr(task, "compute_cams", broken)
    net = build_classifier({"name": "simple_cnn", "input_size": 32}).eval()
    inputs = torch.randn(3, 1, 32, 32)
    cfg = OmegaConf.merge(OmegaConf.load(ROOT / "conf" / "predict.yaml"), {"cams": True})
    probabilities, cams = task.probabilities_of(net, inputs, cfg, 0.5, torch.device("cpu"))
    with torch.inference_mode():
        np.testing.assert_allclose(probabilities, torch.sigmoid(net(inputs)).numpy(), atol=1e-7)
    assert cams is None


def test_predict_threshold_override_changes_the_calls(trained, scans, tmp_path):
    _, _, ckpt = trained
    folder, good = scans
    expected = reference(ckpt, good)
    cut = float(np.sort(expected)[4])  # 16 of the 20 files at or above it
    table = predict(predict_config(ckpt, f"{folder}/film*", f"threshold={cut}"), tmp_path)
    assert (table["predicted"] == "covid").sum() == 16
