"""calibrate_site.py: a new hospital's operating point from a few of its films or none, the
site profile as data bound to one model file, and evaluate/predict reading it with site=."""
from __future__ import annotations

import json
import pickle

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import composed, read_results, run_script, untrained_checkpoint_file
from covid_tl.core.errors import ConfigError
from covid_tl.engine.model_card import EVERY_RATE
from covid_tl.engine.site_card import site_card
from covid_tl.models.site_profile import read_profile, site_operating_point
from covid_tl.stats.site import cut_between, draw_labelled, em_prevalence, how_many_films, matched_cut

#: Phantom hospitals small enough for seconds: the checkpoint trains (in name) on A and B, C is the new site.
SHIFT = ["data=synthetic_shift", "data.phantoms.n_patients=16", "data.phantoms.image_size=48"]
MODEL = [*SHIFT, "backbone.input_size=32", "data.batch_size=16", "preprocessing.cache=false"]


def test_em_prevalence_solves_the_prior_likelihood_equation_worked_by_hand():
    """Films with likelihood ratios 4, 4, 1/4 (posteriors 0.8, 0.8, 0.2 at a trained prior of
    0.5): the prior's likelihood is stationary where 2 * 3 / (1 + 3p) = 0.75 / (1 - 0.75p), i.e.
    6 - 4.5p = 0.75 + 2.25p, p = 5.25 / 6.75 = 7/9. Films that agree with the trained prior
    (0.8 and 0.2) leave it at 0.5."""
    assert em_prevalence(np.array([0.8, 0.8, 0.2]), 0.5) == pytest.approx(7 / 9, abs=1e-6)
    assert em_prevalence(np.array([0.8, 0.2]), 0.5) == pytest.approx(0.5, abs=1e-9)


def test_the_matched_cut_calls_the_share_worked_out_by_hand():
    """Reference at the model's cut 0.5: no finding 0.1 0.2 0.3 0.6 (specificity 3/4), COVID-19
    0.4 0.7 0.8 0.9 (sensitivity 3/4). At a prevalence of 0.2 the share called is 0.2 * 0.75 +
    0.8 * 0.25 = 0.35: 7 of the site's 20 films 0.05, 0.10, ..., 1.00, i.e. 0.70 and up; the cut
    lies midway between 0.70 and 0.65."""
    reference = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    targets = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    site = np.arange(1, 21) * 0.05
    matched = matched_cut(site, reference, targets, 0.5, 0.2)
    assert matched["share_called"] == pytest.approx(0.35)
    assert matched["threshold"] == pytest.approx(0.675)
    assert (site >= matched["threshold"]).sum() == 7
    assert cut_between(site, 0) == pytest.approx(1.0) and cut_between(site, 20) == pytest.approx(0.025)
    with pytest.raises(ValueError, match="prevalence"):
        matched_cut(site, reference, targets, 0.5, 1.5)


def test_a_draw_takes_n_films_per_class_of_distinct_patients_and_holds_out_every_other_patient():
    targets = np.array([1] * 12 + [0] * 12)
    patients = np.array([f"p{i // 2}" for i in range(24)])  # two films per patient
    labelled, held_out = draw_labelled(targets, patients, 3, np.random.default_rng(0))
    assert (targets[labelled] == 1).sum() == 3 and (targets[labelled] == 0).sum() == 3
    assert len(set(patients[labelled])) == 6
    assert not set(patients[labelled]) & set(patients[held_out])
    assert len(held_out) == 24 - 2 * 6  # both films of each drawn patient leave the held-out set
    again, _ = draw_labelled(targets, patients, 3, np.random.default_rng(0))
    assert list(again) == list(labelled)
    with pytest.raises(ValueError, match="need 7 patients"):
        draw_labelled(targets, patients, 7, np.random.default_rng(0))


def test_the_curve_is_perfect_on_separable_films_and_skips_what_the_site_cannot_afford():
    """COVID-19 films at 0.90-0.98, no finding at 0.02-0.10: youden's cut on any draw lies midway
    between the lowest COVID-19 and the highest no-finding film drawn, in [0.46, 0.54], and
    calls every other film right."""
    targets = np.array([1] * 5 + [0] * 5)
    probabilities = np.array([0.9, 0.92, 0.94, 0.96, 0.98, 0.02, 0.04, 0.06, 0.08, 0.1])
    curve = how_many_films(probabilities, targets, np.arange(10), "youden", [2, 4, 5], 20, 0)
    assert sorted(curve) == [2, 4]  # 5 per class would leave nothing held out
    for n in (2, 4):
        assert np.all(curve[n]["sensitivity"] == 1) and np.all(curve[n]["specificity"] == 1)
        assert np.all((curve[n]["cut"] >= 0.46 - 1e-12) & (curve[n]["cut"] <= 0.54 + 1e-12))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """An untrained checkpoint of data=synthetic_shift (hospitals A and B train, C is the test
    split): its probabilities are what they are; calibrate_site needs no better model."""
    return untrained_checkpoint_file(tmp_path_factory.mktemp("site") / "model.ckpt", *MODEL)


def calibrate(tmp_path, ckpt, *overrides):
    from covid_tl.tasks.calibrate_site import calibrate_site

    out = tmp_path / "site"
    cfg = composed("calibrate_site", f"ckpt_path={ckpt}", "site=hospital_c", *overrides, "bootstrap=50",
                   "resamples=30", run_dir=str(out))
    return calibrate_site(cfg, out), out


def test_a_training_film_is_found_under_another_name_by_its_bytes(tmp_path):
    from covid_tl.tasks.calibrate_site import same_files

    for name, content in (("train.png", b"abcd"), ("copy.png", b"abcd"), ("other.png", b"abce"), ("long.png", b"abcde")):
        (tmp_path / name).write_bytes(content)
    files = [str(tmp_path / n) for n in ("copy.png", "other.png", "long.png")]
    assert same_files(files, [str(tmp_path / "train.png")]) == [str(tmp_path / "copy.png")]  # same size, other bytes: no


def youden_by_hand(probabilities, targets):
    """Each distinct probability v as the lowest called: sensitivity + specificity - 1 at p >= v;
    the best (the highest v among ties), its cut midway to the next lower probability (0 below)."""
    values = np.unique(probabilities)
    scores = [((probabilities >= v) & (targets == 1)).sum() / (targets == 1).sum()
              + ((probabilities < v) & (targets == 0)).sum() / (targets == 0).sum() - 1 for v in values]
    best = max(i for i, s in enumerate(scores) if s >= max(scores) - 1e-12)
    return (values[best] + (values[best - 1] if best else 0.0)) / 2


def test_the_site_cut_on_a_seeded_draw_is_the_one_worked_out_from_its_films(model, tmp_path):
    record, out = calibrate(tmp_path, model, *SHIFT, "source=hospital_c", "labelled=3", "seed=5")
    films = pd.read_csv(out / "site_films.csv")
    labelled = films[films.role == "labelled"]
    assert len(labelled) == 6 and labelled.patient_id.nunique() == 6 and set(films.source) == {"hospital_c"}
    targets = (labelled.label == "covid").to_numpy().astype(int)
    cut = youden_by_hand(labelled.prob_covid.to_numpy(), targets)
    point = record["operating_point"]
    assert point["threshold"] == pytest.approx(cut, abs=1e-9)
    assert (point["split"], point["method"], point["n"], point["site"]) == ("site", "labelled", 6, "hospital_c")
    held = films[films.role == "held_out"]
    called = held.prob_covid >= point["threshold"]
    block = record["rates"]["held_out_site_cut"]
    assert block["sensitivity"] == pytest.approx(called[held.label == "covid"].mean())
    assert block["specificity"] == pytest.approx((~called[held.label == "no_finding"]).mean())
    assert "site cut" in block["at"] and "model's own cut" in record["rates"]["held_out_model_cut"]["at"]
    assert read_profile(out / "site_profile.json") == json.loads((out / "site_profile.json").read_text())
    again, _ = calibrate(tmp_path / "again", model, *SHIFT, "source=hospital_c", "labelled=3", "seed=5")
    assert again["operating_point"]["threshold"] == point["threshold"]  # seeded


def test_label_free_matches_the_share_and_says_what_it_assumes(model, tmp_path):
    record, out = calibrate(tmp_path, model, *SHIFT, "source=hospital_c", "labelled=0", "prevalence=0.5")
    free, point = record["label_free"], record["operating_point"]
    films = pd.read_csv(out / "site_films.csv")
    assert point["method"] == "label_free" and set(films.role) == {"unlabelled"}
    assert (films.prob_covid >= point["threshold"]).sum() == round(free["share_called"] * len(films))
    assert free["reference"] == "val" and "assumes" in free and 0 <= free["em_prevalence"] <= 1
    assert set(record["rates"]) == {"all_site_cut", "all_model_cut"}


def test_a_site_that_shares_patients_with_the_training_split_is_refused_in_one_line(model, tmp_path):
    with pytest.raises(ConfigError) as error:
        calibrate(tmp_path, model, *SHIFT, "source=hospital_a", "labelled=2")
    message = str(error.value)
    assert "\n" not in message and "in the model's own data" in message and "in train" in message
    assert not (tmp_path / "site" / "site_profile.json").exists()


def test_profiles_are_data_bound_to_their_model(model, tmp_path):
    record, out = calibrate(tmp_path, model, *SHIFT, "source=hospital_c", "labelled=2")
    profile = out / "site_profile.json"
    assert site_operating_point(profile, model)["threshold"] == record["operating_point"]["threshold"]
    other = untrained_checkpoint_file(tmp_path / "other.ckpt", *MODEL, "seed=7")
    with pytest.raises(ConfigError, match="made for another model"):
        site_operating_point(profile, other)
    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.json"
    hostile.write_bytes(pickle.dumps(Ran(str(marker))))
    with pytest.raises(ConfigError, match="not a readable site profile"):
        read_profile(hostile)
    assert not marker.exists()  # never unpickled
    edited = json.loads(profile.read_text())
    edited["operating_point"]["threshold"] = "__import__('os').system('true')"
    profile.write_text(json.dumps(edited))
    with pytest.raises(ConfigError, match="threshold must be a probability"):
        read_profile(profile)


@pytest.mark.parametrize("overrides, message", [
    ([], "give the site's films once"),
    (["data=synthetic", "images=x"], "give the site's films once"),
    (["images=x"], "give labelled=0"),
    (["images=x", "labelled=0", "curve=[0]"], "whole numbers >= 1"),
    (["data=synthetic", "labelled=-1"], "labelled=-1"),
    (["data=synthetic", "rule=0.3"], "give a rule"),
])
def test_options_are_refused_in_one_line_before_the_model_is_read(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        calibrate(tmp_path, tmp_path / "no model here", *overrides)
    assert "\n" not in str(error.value)


class Ran:
    """A pickle that would leave a file behind if anything unpickled it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_the_site_card_names_the_one_exception_to_the_training_threshold():
    record = {"site": "c", "created": "now", "model": {"sha256": "ab" * 32}, "cut_ci95": [0.2, 0.4],
              "operating_point": {"rule": "youden", "threshold": 0.3, "temperature": 1.0, "n": 8, "method": "labelled"},
              "films": {"n": 20, "patients": 20, "n_per_class": {"covid": 10, "no_finding": 10}, "labelled_per_class": 4},
              "rates": {"held_out_site_cut": {"at": "site cut (youden cut 0.300)", "n": 12, "sensitivity": 0.5,
                                              "specificity": 1.0, "auroc": 0.9}},
              "how_many_films": {"rule": "youden", "resamples": 10, "per_n": {}}}
    card = site_card(f"# Card\n\n## Threshold\n\n{EVERY_RATE} More.\n", record)
    assert EVERY_RATE not in card and "except those of the section on site `c`" in card
    assert "## Operating point at site `c`" in card and "**0.3**" in card
    assert "| held out site cut | site cut (youden cut 0.300) | 12 |" in card
    unlabelled = {**record, "rates": {}, "films": {"n": 30, "images": "scans/*", "n_per_class": None}}
    assert "30 unlabelled files (`images=scans/*`): no rate can be measured" in site_card("", unlabelled)


def write_phantom_site(folder):
    """Hospital C's phantoms as PNG files and a manifest, as a hospital would hand them over."""
    from omegaconf import OmegaConf
    from hydra.utils import instantiate

    cfg = composed("train", *SHIFT)
    source = instantiate(OmegaConf.to_container(cfg.data.sources.hospital_c, resolve=True), _convert_="all")
    frame = source.frame()
    rows = []
    for i, row in frame.iterrows():
        path = folder / "films" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), source.load_image(row))
        rows.append({"path": f"films/{path.name}", "label": row["label"], "patient_id": row["patient_id"],
                     "source": "hospital_c"})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


@pytest.mark.slow
def test_evaluate_and_predict_with_site_reproduce_the_profiles_threshold_and_rates(model, tmp_path):
    manifest = write_phantom_site(tmp_path / "hospital")
    record, out = calibrate(tmp_path, model, "data=manifest", f"data.path={manifest}", "labelled=3", "calibrate=true")
    point, held = record["operating_point"], record["rates"]["held_out_site_cut"]
    profile = out / "site_profile.json"
    proc = run_script("evaluate.py", f"ckpt_path={model}", f"site={profile}", f"external=[{out / 'held_out.csv'}]",
                      "splits=[test]", "bootstrap=20", f"hydra.run.dir={tmp_path / 'eval'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(tmp_path / "eval")
    assert results.operating_point["threshold"] == point["threshold"] and results.operating_point["split"] == "site"
    external = next(v for k, v in results.sets.items() if k.startswith("external:"))
    assert (external["sensitivity"], external["specificity"], external["n"]) == (held["sensitivity"], held["specificity"], held["n"])
    assert f"on site {record['site']}" in proc.stdout
    proc = run_script("predict.py", f"ckpt_path={model}", f"site={profile}", f"images={tmp_path / 'hospital' / 'films'}",
                      "num_workers=0", f"hydra.run.dir={tmp_path / 'predict'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    predicted = pd.read_csv(tmp_path / "predict" / "predictions.csv").set_index("path")
    films = pd.read_csv(out / "site_films.csv")
    assert len(predicted) == len(films)
    for path, call in zip(films.path, films.call_site_cut):
        assert predicted.loc[str(path), "predicted"] == call
    proc = run_script("explain.py", f"ckpt_path={model}", f"site={profile}", f"images={tmp_path / 'hospital' / 'films'}",
                      "n=4", f"hydra.run.dir={tmp_path / 'explain'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    cams = pd.read_csv(tmp_path / "explain" / "cams.csv")
    assert list(cams.predicted) == ["covid" if p >= point["threshold"] else "no_finding" for p in cams.prob_covid]
    free, free_out = calibrate(tmp_path / "files", model, f"images={tmp_path / 'hospital' / 'films'}", "labelled=0")
    files = pd.read_csv(free_out / "site_films.csv")
    assert len(files) == len(films) and set(files.role) == {"unlabelled"} and free["rates"] == {}
    assert (files.prob_covid >= free["operating_point"]["threshold"]).sum() == round(
        free["label_free"]["share_called"] * len(files))
    assert free["films"]["n_per_class"] is None and not (free_out / "how_many_films.png").exists()
    proc = run_script("evaluate.py", f"ckpt_path={model}", f"site={profile}", "threshold=0.5",
                      f"hydra.run.dir={tmp_path / 'both'}")
    assert proc.returncode != 0 and "both set the operating point" in proc.stderr.strip().splitlines()[-1]
