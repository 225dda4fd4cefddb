"""The source probe (covid_tl.stats.probe): hand-worked scores, its folds and its errors."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from covid_tl.stats import probe
from covid_tl.stats.probe import probe_auroc


def patients_of(per_class: dict[str, int], images: int = 1):
    """(classes, groups) for `per_class` patients of each class, `images` rows each."""
    classes, groups = [], []
    for name, count in per_class.items():
        for p in range(count):
            classes += [name] * images
            groups += [f"{name}-p{p}"] * images
    return np.array(classes), np.array(groups)


class ScoreIsFirstColumn:
    """Stands in for the probe pipeline: the probability of class 1 is the first feature itself,
    so out-of-fold scores are forced and the AUROC can be worked by hand."""

    def fit(self, features, labels):
        self.classes_ = np.unique(labels)
        return self

    def predict_proba(self, features):
        return np.column_stack([1 - features[:, 0], features[:, 0]])


class NeverSawFirstClass(ScoreIsFirstColumn):
    """A probe whose training part lacked class 0: predict_proba has the class 1 column only."""

    def fit(self, features, labels):
        self.classes_ = np.unique(labels)[1:]
        return self

    def predict_proba(self, features):
        return features[:, :1]


def test_a_column_equal_to_the_class_is_decoded_perfectly():
    classes, groups = patients_of({"xray_mini/nih": 20, "external:views/nih": 20}, images=2)
    rng = np.random.default_rng(0)
    signal = (classes == "xray_mini/nih").astype(float)
    features = np.column_stack([signal, rng.normal(size=(len(classes), 3))])
    result = probe_auroc(features, classes, groups)
    # metrics.auroc (torchmetrics) sums in float32: a perfect ranking can come out 1 - 1.2e-7.
    assert result["auroc"] == pytest.approx(1.0, abs=1e-6)
    assert result["ci95"] == pytest.approx([1.0, 1.0], abs=1e-6)
    assert result["n"] == 80 and result["patients"] == 40 and result["folds"] == 5
    assert result["classes"] == {"external:views/nih": 40, "xray_mini/nih": 40}


def test_features_independent_of_the_class_score_near_chance():
    classes, groups = patients_of({"a": 60, "b": 60})
    features = np.random.default_rng(1).normal(size=(len(classes), 8))
    result = probe_auroc(features, classes, groups, resamples=300)
    assert abs(result["auroc"] - 0.5) < 0.15
    low, high = result["ci95"]
    assert low < 0.5 < high
    again = probe_auroc(features, classes, groups, resamples=300)
    assert again["auroc"] == result["auroc"] and again["ci95"] == result["ci95"]
    assert np.array_equal(again["oof"], result["oof"]) and np.array_equal(again["fold"], result["fold"])


def test_a_patient_is_in_one_fold_and_folds_follow_the_smallest_class():
    classes, groups = patients_of({"a": 10, "b": 3}, images=3)
    order = np.random.default_rng(2).permutation(len(classes))  # a patient's rows not adjacent
    classes, groups = classes[order], groups[order]
    features = np.random.default_rng(3).normal(size=(len(classes), 4))
    result = probe_auroc(features, classes, groups, folds=5, resamples=50)
    assert result["folds"] == 3
    assert sorted(set(result["fold"].tolist())) == [0, 1, 2]
    for patient in set(groups):
        assert len(set(result["fold"][groups == patient].tolist())) == 1
    assert np.allclose(result["oof"].sum(axis=1), 1.0)
    assert probe_auroc(features, classes, groups, folds=2, resamples=50)["folds"] == 2


def test_forced_scores_give_the_hand_worked_auroc(monkeypatch):
    monkeypatch.setattr(probe, "make_pipeline", lambda *steps: ScoreIsFirstColumn())
    # Class "a" (0) scores 0.1 0.4 0.35 0.8; class "b" (1) 0.3 0.6 0.7 0.9. Pairs where b beats
    # a: 0.3 beats 1, 0.6 and 0.7 beat 3 each, 0.9 beats 4: 11 of 16.
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.3, 0.6, 0.7, 0.9])
    classes, groups = patients_of({"a": 4, "b": 4})
    result = probe_auroc(scores[:, None], classes, groups, folds=2, resamples=200)
    assert result["auroc"] == pytest.approx(11 / 16)
    assert np.allclose(result["oof"][:, 1], scores)
    assert result["auroc"] == pytest.approx(roc_auc_score(classes == "b", result["oof"][:, 1]))
    low, high = result["ci95"]
    assert low <= 11 / 16 <= high


def test_two_class_auroc_is_sklearns_on_the_returned_scores():
    classes, groups = patients_of({"b": 15, "a": 15}, images=2)
    rng = np.random.default_rng(4)
    features = rng.normal(size=(len(classes), 5)) + 0.5 * (classes == "b")[:, None]
    result = probe_auroc(features, classes, groups, resamples=100)
    assert 0.5 < result["auroc"] < 1.0  # a weak signal: neither chance nor perfect
    assert result["auroc"] == pytest.approx(roc_auc_score(classes == "b", result["oof"][:, 1]))


def test_three_classes_score_the_mean_one_vs_rest_auroc():
    classes, groups = patients_of({"c": 12, "a": 12, "b": 12})
    rng = np.random.default_rng(5)
    centres = {"a": [0.0, 0.0], "b": [0.8, 0.0], "c": [0.0, 0.8]}
    features = np.array([centres[c] for c in classes]) + rng.normal(size=(len(classes), 2))
    result = probe_auroc(features, classes, groups, resamples=100)
    oof = result["oof"]
    by_hand = np.mean([roc_auc_score(classes == name, oof[:, i]) for i, name in enumerate("abc")])
    assert result["auroc"] == pytest.approx(by_hand)
    assert oof.shape == (36, 3) and np.allclose(oof.sum(axis=1), 1.0)
    low, high = result["ci95"]
    assert low <= result["auroc"] <= high


def test_a_class_the_fold_probe_never_saw_gets_probability_zero(monkeypatch):
    monkeypatch.setattr(probe, "make_pipeline", lambda *steps: NeverSawFirstClass())
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    classes, groups = patients_of({"a": 3, "b": 3})
    result = probe_auroc(scores[:, None], classes, groups, resamples=50)
    assert np.all(result["oof"][:, 0] == 0) and np.allclose(result["oof"][:, 1], scores)
    assert result["auroc"] == pytest.approx(1.0, abs=1e-6)


def test_one_class_or_a_class_of_one_patient_is_refused():
    features = np.zeros((4, 2))
    with pytest.raises(ValueError, match="at least 2 classes"):
        probe_auroc(features, ["a"] * 4, ["p1", "p1", "p2", "p3"])
    with pytest.raises(ValueError, match=r"'external:views/nih' has 1 patient"):
        probe_auroc(features, ["xray_mini/nih"] * 2 + ["external:views/nih"] * 2, ["p1", "p2", "q1", "q1"])
    with pytest.raises(ValueError, match="one row each"):
        probe_auroc(features, ["a", "b"], ["p1", "p2"])
