"""Every call is made at the run's cut, and says which: per-epoch metrics and Grad-CAM grids
with a threshold rule, and the warnings for an extreme cut or one call for a whole set."""
import logging
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from covid_tl.engine import evaluation
from covid_tl.cam import callback as cam_callback
from covid_tl.cam.callback import RIGHT, WRONG, GradCAMCallback
from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.manifest import Manifest
from covid_tl.data.synthetic.source import SyntheticSource
from covid_tl.reporting.grid import WHITE
from covid_tl.models.classifier import build_classifier
from covid_tl.models.module import CovidClassifier
from covid_tl.stats.operating_point import cut_decimals, describe_cut, extreme_cut, one_class_calls

pytestmark = pytest.mark.filterwarnings("ignore:.*self.trainer. reference is not registered")

# Validation predictions worked by hand (as in test_operating_point): every p below 0.5.
# Youden: J = 2/3 at 0.35 and at 0.2, the higher one wins; the cut sits midway to 0.3: 0.325.
# At 0.325: COVID-19 0.35 and 0.45 found (2/3), no-finding all right (3/3), 5/6 right.
# At 0.5: nothing is called COVID-19: sensitivity 0, specificity 1, accuracy 3/6.
PROBS = np.array([0.05, 0.1, 0.2, 0.3, 0.35, 0.45])
TARGETS = np.array([0, 0, 1, 0, 1, 1])


def module(threshold="youden", input_size=8):
    net = build_classifier({"name": "simple_cnn", "input_size": input_size})
    fixed = 0.5 if isinstance(threshold, str) else threshold
    return CovidClassifier(net, optimizer=torch.optim.Adam, threshold=fixed, config={"threshold": threshold})


def test_with_a_rule_each_validation_epoch_is_called_at_the_cut_the_rule_gives_on_it():
    model = module("youden")
    model.val_metrics.update(torch.tensor(PROBS), torch.tensor(TARGETS))
    cut, rule = model.validation_cut()
    assert (cut, rule) == (pytest.approx(0.325), "youden")
    values = model.val_metrics.compute()
    assert values == pytest.approx({"sensitivity": 2 / 3, "specificity": 1.0, "accuracy": 5 / 6, "auroc": 8 / 9})


def test_a_spec_rule_chooses_each_validation_epochs_cut_as_sens_and_youden_do():
    # specificity at the cuts 0.45 0.35 0.3 0.2 0.1: 1 1 2/3 2/3 1/3; 2/3 down to 0.2, midway to 0.1
    model = module("spec@0.6")
    model.val_metrics.update(torch.tensor(PROBS), torch.tensor(TARGETS))
    assert model.validation_cut() == (pytest.approx(0.15), "spec@0.6")
    values = model.val_metrics.compute()
    assert values == pytest.approx({"sensitivity": 1.0, "specificity": 2 / 3, "accuracy": 5 / 6, "auroc": 8 / 9})


def test_the_model_card_says_how_a_spec_rule_chose_the_threshold():
    from covid_tl.engine.model_card import threshold_origin

    text = threshold_origin({"rule": "spec@0.9", "threshold": 0.42, "split": "val", "n": 20})
    assert "`threshold=spec@0.9` (the lowest threshold whose specificity reaches 0.9)" in text
    assert "(the highest threshold whose sensitivity reaches 0.95)" in threshold_origin(
        {"rule": "sens@0.95", "threshold": 0.42, "split": "val", "n": 20})


def test_with_a_number_the_epoch_is_called_at_that_number_and_says_so():
    model = module(0.5)
    model.val_metrics.update(torch.tensor(PROBS), torch.tensor(TARGETS))
    assert model.validation_cut() == (0.5, None)
    assert model.val_metrics.compute()["sensitivity"] == 0.0  # the frozen-head trap at 0.5, visible


def test_a_rule_without_both_classes_in_the_batches_falls_back_to_the_number_and_says_so():
    model = module("youden")
    model.val_metrics.update(torch.tensor([0.2, 0.7]), torch.tensor([1, 1]))  # a sanity check's batch
    assert model.validation_cut() == (0.5, None)
    assert set(model.val_metrics.compute()) == {"sensitivity", "accuracy"}  # no specificity, no AUROC: undefined


def test_p_exactly_at_the_cut_is_called_covid_as_in_results_json():
    """torchmetrics calls p > threshold; results.json (metrics.summarize) calls p >= threshold.
    An untrained head with zero logits gives p = 0.5 exactly: both must agree."""
    model = module(0.5)
    model.val_metrics.update(torch.tensor([0.5, 0.5]), torch.tensor([1, 0]))
    assert model.val_metrics.compute()["sensitivity"] == 1.0


def test_a_training_run_logs_the_cut_of_every_epoch_and_trains_at_the_validation_cut(tmp_path):
    """metrics.csv: val/threshold the youden cut of the epoch (not 0.5, and one of its midpoints),
    train/threshold the same number; the CAM grid's title names it."""
    torch.manual_seed(0)
    net = build_classifier({"name": "simple_cnn", "input_size": 32})
    datamodule = XrayDataModule({"s": SyntheticSource(n_patients=16, image_size=32)}, net.input_spec)
    trainer = pl.Trainer(max_epochs=2, callbacks=[GradCAMCallback(tmp_path / "cams", num_images=4)],
                         logger=CSVLogger(tmp_path, name="", version=""), enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    model = CovidClassifier(net, optimizer=torch.optim.Adam, config={"threshold": "youden"})
    trainer.fit(model, datamodule=datamodule)
    frame = pd.read_csv(tmp_path / "metrics.csv")
    val = frame.dropna(subset=["val/threshold"]).set_index("epoch")
    train = frame.dropna(subset=["train/threshold"]).set_index("epoch")
    assert len(val) == 2 and (val["val/threshold"] != 0.5).all()
    assert train["train/threshold"].to_numpy() == pytest.approx(val["val/threshold"].to_numpy())
    assert sorted((tmp_path / "cams").glob("*.png"))  # the grid was drawn at that cut (see the next test)


@pytest.fixture
def cam_setup(monkeypatch):
    """make(threshold): a model and a trainer for the callback on four validation phantoms
    (COVID-19, no finding, COVID-19, no finding), CAMs and probabilities made up: 0.07, 0.07,
    0.03, 0.03; and what the grid was drawn with."""
    return lambda threshold: made_up_cams(monkeypatch, threshold)


def made_up_cams(monkeypatch, threshold):
    torch.manual_seed(0)
    model = module(threshold, input_size=32)
    datamodule = XrayDataModule({"s": SyntheticSource(n_patients=24, image_size=32)}, model.net.input_spec)
    datamodule.setup("fit")
    seen = {}

    def made_up(net, images, method, target, layer, threshold=0.5):
        seen["threshold"] = threshold
        return np.zeros((len(images), 32, 32), np.float32), np.array([0.07, 0.07, 0.03, 0.03])

    def grid(*args, **kwargs):
        seen.update(lines=args[2], **kwargs)
        return real_grid(*args, **kwargs)

    real_grid = cam_callback.cam_grid
    monkeypatch.setattr(cam_callback, "compute_cams", made_up)
    monkeypatch.setattr(cam_callback, "cam_grid", grid)
    trainer = SimpleNamespace(datamodule=datamodule, sanity_checking=False, current_epoch=0, is_global_zero=True,
                              loggers=[])
    return model, trainer, seen


def test_the_grid_marks_right_and_wrong_at_the_rules_cut_and_names_it(tmp_path, cam_setup):
    """Validation p 0.01 0.02 0.04 (no finding) and 0.05 0.09 0.12 (COVID-19) separate
    perfectly: youden calls from 0.05 down, midway to 0.04: the cut 0.045. At it 0.07 is
    COVID-19 and 0.03 no finding: right, wrong, wrong, right (at 0.5: wrong, right, wrong, right)."""
    model, trainer, seen = cam_setup("youden")
    model.val_metrics.update(torch.tensor([0.01, 0.02, 0.04, 0.05, 0.09, 0.12]), torch.tensor([0, 0, 0, 1, 1, 1]))
    callback = GradCAMCallback(tmp_path / "cams", num_images=4)
    callback.setup(trainer, model, "fit")
    assert callback.labels == ["covid", "no_finding", "covid", "no_finding"]
    callback.on_validation_epoch_end(trainer, model)
    assert seen["threshold"] == pytest.approx(0.045)  # the CAMs explain the call at the cut too
    assert [c[1] for c in seen["colours"]] == [RIGHT, WRONG, WRONG, RIGHT]
    assert seen["lines"][0][1] == "p(COVID-19)=0.070 -> COVID-19"  # three decimals beside a cut of 0.045
    assert seen["title"].endswith("called at youden cut 0.045 on this epoch's val")
    assert seen["key"][0] == (RIGHT, "called right (COVID-19 at p >= 0.045: youden on this epoch's val)")
    assert (tmp_path / "cams" / "epoch_000.png").is_file()


def test_the_grid_of_a_fixed_threshold_says_p_at_that_number(tmp_path, cam_setup):
    model, trainer, seen = cam_setup(0.5)
    model.val_metrics.update(torch.tensor([0.01, 0.12]), torch.tensor([0, 1]))
    callback = GradCAMCallback(tmp_path / "cams", num_images=4)
    callback.setup(trainer, model, "fit")
    callback.on_validation_epoch_end(trainer, model)
    assert [c[1] for c in seen["colours"]] == [WRONG, RIGHT, WRONG, RIGHT]
    assert seen["title"].endswith("called at p >= 0.50") and seen["key"][0][1] == "called right (COVID-19 at p >= 0.50)"
    assert seen["colours"][0][0] == WHITE


def test_cut_decimals_and_descriptions_by_hand():
    assert [cut_decimals(c) for c in (0.5, 0.1, 0.95, 0.063, 0.7769, 0.0071, 0.9991)] == [2, 2, 2, 3, 3, 4, 5]
    assert describe_cut(0.5) == "p >= 0.50" and describe_cut(0.0634, "youden", "val") == "youden cut 0.063 on val"


def test_an_extreme_cut_gets_one_warning_line_and_a_middling_one_none():
    assert extreme_cut("youden", 0.1) is None and extreme_cut("youden", 0.9) is None and extreme_cut("sens@0.9", 0.5) is None
    low = extreme_cut("youden", 0.063, "val", 29)
    assert low.startswith("threshold=youden chose the cut p >= 0.063 on val (29 images), below 0.1:")
    assert "called COVID-19" in low and "\n" not in low
    assert "above 0.9" in extreme_cut("sens@0.5", 0.95) and "called no finding" in extreme_cut("sens@0.5", 0.95)


def test_one_call_for_a_whole_set_is_named_at_the_cut_and_at_half():
    probs = np.array([0.02, 0.05, 0.08, 0.2, 0.3, 0.45])
    both = np.array([0, 1, 0, 1, 0, 1])
    # At 0.063: 0.08, 0.2, 0.3, 0.45 called COVID-19 (4); at 0.5 none.
    assert one_class_calls(probs, 0.063, "test", both) == (
        "test: the model calls all 6 images no finding at p >= 0.50 (4 COVID-19 at its cut p >= 0.063); "
        "rates at such a cut say nothing of how it ranks the images (AUROC)")
    assert "all 6 images COVID-19 at its cut p >= 0.01 and all 6 images no finding at p >= 0.50" in \
        one_class_calls(probs, 0.01, "test", both)
    assert one_class_calls(np.array([0.4, 0.6]), 0.5, "test", np.array([0, 1])) is None
    assert one_class_calls(probs, 0.5, "extra_no_finding", np.zeros(6)) is None  # all no finding may be right
    assert one_class_calls(probs, 0.5, "images") is not None  # no labels: still worth a line


class GivenLogits(torch.nn.Module):
    """A 'network' whose logit is the first pixel of its input."""

    temperature = 1.0

    def forward(self, x):
        return x.flatten(1)[:, 0]


def image_set(probabilities, targets):
    manifest = Manifest.from_records({"path": f"{i}.png", "label": ("no_finding", "covid")[t], "patient_id": str(i),
                                      "source": "s", "view": "PA"} for i, t in enumerate(targets))
    logits = torch.logit(torch.tensor(probabilities, dtype=torch.float32))
    return manifest, torch.utils.data.TensorDataset(logits[:, None], torch.tensor(targets))


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.name == evaluation.__name__ and r.levelno == logging.WARNING]


def test_choosing_an_extreme_cut_and_evaluating_a_one_class_call_each_log_one_line(tmp_path, caplog):
    """The validation set above: youden cuts at 0.045 (one line); the test set at 0.045 calls
    all four COVID-19 and at 0.5 none (one line for the set)."""
    val = image_set([0.01, 0.02, 0.04, 0.05, 0.09, 0.12], [0, 0, 0, 1, 1, 1])
    with caplog.at_level(logging.WARNING):
        point = evaluation.choose_operating_point(GivenLogits(), val, "youden", False, torch.device("cpu"))
        assert point["threshold"] == pytest.approx(0.045, abs=1e-6)
        [line] = warnings_of(caplog)
        assert line.startswith("threshold=youden chose the cut p >= 0.045 on val (6 images), below 0.1")
        evaluation.evaluate_sets(GivenLogits(), {"test": image_set([0.06, 0.1, 0.2, 0.3], [0, 1, 0, 1])}, tmp_path,
                                 point["threshold"], resamples=10, device=torch.device("cpu"))
    assert warnings_of(caplog)[1:] == [
        "test: the model calls all 4 images COVID-19 at its cut p >= 0.045 and all 4 images no finding at "
        "p >= 0.50; rates at such a cut say nothing of how it ranks the images (AUROC)"]
