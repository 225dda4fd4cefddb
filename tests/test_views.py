"""Both views in one dataset: folds of the development set, leave-view-out, view-balanced
batches, per-view reporting (issue #22)."""
import numpy as np
import pandas as pd
import pytest

from conftest import XRAY_MINI, XRAY_VIEWS, composed, needs_xray_views
from data_fixtures import image
from covid_tl.data.datamodule import EpochWeightedDraw
from covid_tl.data.manifest import Manifest
from covid_tl.data.sampling import cell_balanced_weights
from covid_tl.engine.build import build_datamodule
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.data.split import _folds_by_patient, assign_splits, split_by_patient


def films(n_patients: int = 40, seed: int = 0) -> Manifest:
    """Patients of both labels with 1-3 films each; every third patient has an AP film too."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = "covid" if p % 3 == 0 else "no_finding"
        views = ["PA"] * int(rng.integers(1, 3)) + (["AP"] if p % 3 == 1 else [])
        for i, view in enumerate(views):
            rows.append({"path": f"p{p}_{i}.png", "label": label, "patient_id": f"nih:{p}", "source": "nih", "view": view})
    return Manifest.from_records(rows)


def by_patient(manifest: Manifest, names) -> dict:
    frame = manifest.frame.assign(split=names)
    assert frame.groupby("patient_id")["split"].nunique().max() == 1  # no patient in two splits
    return frame.groupby("patient_id")["split"].first().to_dict()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validation_folds_keep_one_test_split_and_validate_every_other_patient_once(seed):
    manifest = films()
    no_folds = by_patient(manifest, split_by_patient(manifest, 0.0, 0.2, seed))
    test = {p for p, s in no_folds.items() if s == "test"}
    val_count = dict.fromkeys(no_folds, 0)
    for fold in range(4):
        split = by_patient(manifest, assign_splits(manifest, 0.15, 0.2, seed, num_folds=4, fold=fold, fold_split="val"))
        assert {p for p, s in split.items() if s == "test"} == test  # the same test split for every fold
        for p, s in split.items():
            val_count[p] += s == "val"
    assert all(val_count[p] == (0 if p in test else 1) for p in no_folds)
    # 40 patients: 14 covid, 26 no-finding; 20% of each label tested (3 and 5), 32 dealt into 4 folds.
    assert len(test) == 8 and sum(val_count.values()) == 32


def test_validation_folds_are_stratified_by_label():
    manifest = films()
    split = by_patient(manifest, assign_splits(manifest, 0.15, 0.2, 0, num_folds=4, fold=0, fold_split="val"))
    labels = manifest.frame.drop_duplicates("patient_id").set_index("patient_id")["label"]
    val = labels[[p for p, s in split.items() if s == "val"]].value_counts().to_dict()
    assert val == {"covid": 3, "no_finding": 6}  # 11 covid dealt 3,3,3,2; 21 no-finding 6,5,5,5


def test_test_folds_are_unchanged_by_the_new_key():
    manifest = films()
    for fold in range(3):
        default = assign_splits(manifest, 0.15, 0.2, 5, num_folds=3, fold=fold)
        assert np.array_equal(default, assign_splits(manifest, 0.15, 0.2, 5, num_folds=3, fold=fold, fold_split="test"))
        is_test = _folds_by_patient(manifest, 3, 5) == fold  # as before fold_split: the fold is the test split
        rest = np.flatnonzero(~is_test)
        assert np.array_equal(default == "test", is_test)
        assert np.array_equal(default[rest], split_by_patient(manifest.subset(rest), 0.15, 0.0, 5))


def test_fold_split_and_holdout_combine_only_as_validation_folds():
    manifest = films()
    other = Manifest(manifest.frame.assign(source=np.where(np.arange(len(manifest)) % 2, "nih", "cohen"),
                                           patient_id=manifest.frame["patient_id"] + np.where(np.arange(len(manifest)) % 2, "", "c")))
    with pytest.raises(ValueError, match="not both"):
        assign_splits(other, 0.15, 0.2, 0, num_folds=3, fold=0, holdout_source="cohen")
    names = assign_splits(other, 0.15, 0.2, 0, num_folds=3, fold=1, fold_split="val", holdout_source="cohen")
    frame = other.frame.assign(split=names)
    assert set(frame.loc[frame["split"] == "test", "source"]) == {"cohen"}
    assert set(frame.loc[frame["split"] != "test", "source"]) == {"nih"} and set(names) == {"train", "val", "test"}
    with pytest.raises(ValueError, match="fold_split must be one of"):
        assign_splits(manifest, 0.15, 0.2, 0, num_folds=3, fold=0, fold_split="train")


def two_views() -> Manifest:
    """12 patients: 0-3 covid (0, 1 AP only; 2 PA and AP), 4-11 no-finding (4, 5 AP; 6 PA and AP)."""
    rows = []
    for p in range(12):
        label = "covid" if p < 4 else "no_finding"
        views = {0: ["AP"], 1: ["AP"], 2: ["PA", "AP"], 4: ["AP"], 5: ["AP"], 6: ["PA", "AP"]}.get(p, ["PA"])
        rows += [{"path": f"{p}{v}.png", "label": label, "patient_id": f"x:{p}", "source": "x", "view": v} for v in views]
    return Manifest.from_records(rows)


def test_holdout_view_tests_on_every_film_of_that_view_and_their_patients():
    manifest = two_views()
    names = assign_splits(manifest, 0.25, 0.2, 0, holdout_view="AP")
    split = by_patient(manifest, names)
    # Every AP film is tested; patients 2 and 6 take their PA film with them (no patient in two splits).
    assert sorted(p for p, s in split.items() if s == "test") == ["x:0", "x:1", "x:2", "x:4", "x:5", "x:6"]
    frame = manifest.frame.assign(split=names)
    assert set(frame.loc[frame["split"] != "test", "view"]) == {"PA"}
    # The rest: covid patient 3 alone (kept for training), no-finding 7-11: round(0.25 * 5) = 1 to val.
    assert frame.loc[frame["split"] != "test"].drop_duplicates("patient_id")["split"].value_counts().to_dict() == {"train": 5, "val": 1}


def test_holdout_view_refuses_unknown_views_everything_held_out_and_a_held_out_source_too():
    manifest = two_views()
    with pytest.raises(ValueError, match=r"holdout_view='LL' matches no image; views: \['AP', 'PA'\]"):
        assign_splits(manifest, 0.25, 0.2, 0, holdout_view="LL")
    ap = manifest.subset(np.flatnonzero(manifest.frame["view"] == "AP"))
    with pytest.raises(ValueError, match="nothing is left to train on"):
        assign_splits(ap, 0.25, 0.2, 0, holdout_view="AP")
    with pytest.raises(ValueError, match="holdout_source or data.holdout_view, not both"):
        assign_splits(manifest, 0.25, 0.2, 0, holdout_source="x", holdout_view="AP")
    # One code path: a held-out source is the same rule on the `source` column.
    renamed = Manifest(manifest.frame.assign(source=manifest.frame["view"]))
    assert np.array_equal(assign_splits(renamed, 0.25, 0.2, 0, holdout_source="AP"), assign_splits(manifest, 0.25, 0.2, 0, holdout_view="AP"))


def views_datamodule(mini, views, *overrides):
    """data=xray_mini_views with its two manifests at `mini` and `views`, set up."""
    cfg = composed("train", "data=xray_mini_views", f"data.path={mini}", f"data.sources.xray_views.path={views}", *overrides)
    dm = build_datamodule(cfg, InputSpec(size=16))
    dm.setup()
    return dm


def two_manifests(tmp_path):
    """A PA manifest and an AP manifest of tiny films; patients nih:0 and nih:1 are in both."""
    paths = []
    for name, view, patients in (("pa", "PA", range(0, 12)), ("ap", "AP", range(-4, 2))):
        rows = []
        for p in patients:
            path = image(tmp_path / name / f"{p}.png", seed=p + 10, size=16)
            rows.append({"path": path.name, "label": "covid" if p % 2 else "no_finding", "patient_id": f"nih:{p}",
                         "source": "nih", "view": view})
        paths.append(tmp_path / name / "manifest.csv")
        pd.DataFrame(rows).to_csv(paths[-1], index=False)
    return paths


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_patient_in_both_manifests_is_in_one_split(tmp_path, seed):
    dm = views_datamodule(*two_manifests(tmp_path), f"seed={seed}", "data.val_fraction=0.2", "data.test_fraction=0.2")
    frame = dm.splits_frame()
    assert len(frame) == 18 and set(frame["reader"]) == {"xray_mini", "xray_views"}
    for patient in ("nih:0", "nih:1"):  # one id, two manifests: the same patient, not two
        assert sorted(frame.loc[frame["patient_id"] == patient, "view"]) == ["AP", "PA"]
    assert frame.groupby("patient_id")["split"].nunique().max() == 1


@needs_xray_views
def test_the_seven_patients_of_both_real_manifests_never_straddle_two_splits():
    dm = views_datamodule(XRAY_MINI / "manifest.csv", XRAY_VIEWS / "manifest.csv")
    frame = dm.manifest.frame
    views = frame.groupby("patient_id")["view"].nunique()
    shared = sorted(views.index[views == 2])
    assert len(frame) == 174 + 196 and len(shared) == 7 and all(p.startswith("nih:") for p in shared)
    schemes = [dict(seed=s) for s in range(5)] + [dict(seed=1, num_folds=5, fold=f, fold_split="val") for f in range(5)]
    for scheme in schemes:
        seed = scheme.pop("seed")
        names = assign_splits(dm.manifest, 0.15, 0.15, seed, **scheme)
        of_shared = frame.assign(split=names).query("patient_id in @shared")
        assert of_shared.groupby("patient_id")["split"].nunique().max() == 1 and len(of_shared) >= 14
        by_patient(dm.manifest, names)


def tiny_frame() -> pd.DataFrame:
    """3 PA covid, 1 AP covid, 2 PA no-finding, 6 AP no-finding: covid is 75% of PA, 14% of AP."""
    cells = [("covid", "PA")] * 3 + [("covid", "AP")] + [("no_finding", "PA")] * 2 + [("no_finding", "AP")] * 6
    return pd.DataFrame(cells, columns=["label", "view"])


def test_each_label_view_cell_weighs_a_quarter():
    frame = tiny_frame()
    weights = cell_balanced_weights(frame)
    # 4 cells: each film weighs 1 / (4 x its cell's size).
    assert np.allclose(weights, [1 / 12] * 3 + [1 / 4] + [1 / 8] * 2 + [1 / 24] * 6)
    assert np.allclose(frame.assign(w=weights).groupby(["label", "view"])["w"].sum(), 0.25)


def test_view_balanced_draws_make_half_of_each_view_covid():
    frame = tiny_frame()
    sampler = EpochWeightedDraw(cell_balanced_weights(frame), seed=3)
    drawn = []
    for epoch in range(2000):
        sampler.set_epoch(epoch)
        rows = list(sampler)
        assert len(rows) == len(frame)  # one split's worth per epoch
        drawn += rows
    draws = frame.iloc[drawn]
    covid_share = (draws["label"] == "covid").groupby(draws["view"]).mean()
    assert covid_share.between(0.48, 0.52).all(), covid_share  # 24,000 draws: sd of each share ~0.005
    sampler.set_epoch(7)
    again = EpochWeightedDraw(cell_balanced_weights(frame), seed=3)
    again.set_epoch(7)
    assert list(sampler) == list(again)  # by (seed, epoch) alone


def test_balance_views_gives_the_train_loader_the_weighted_draw(tmp_path):
    dm = views_datamodule(*two_manifests(tmp_path), "data.balance_views=true", "data.val_fraction=0.2", "data.test_fraction=0.2")
    sampler = dm.train_dataloader().sampler
    train = dm.subset("train").frame
    assert isinstance(sampler, EpochWeightedDraw) and len(sampler) == len(train)
    cells = train.assign(p=sampler.p).groupby(["label", "view"])["p"].sum()
    assert np.allclose(cells, 1 / len(cells))
    assert not isinstance(dm.val_dataloader().sampler, EpochWeightedDraw)


def test_per_view_metrics_in_results_card_console_and_summary_are_the_hand_worked_ones(tmp_path):
    from rich.console import Console

    from covid_tl.data.summary import data_summary
    from covid_tl.engine.evaluation import assess, shift_summary
    from covid_tl.engine.model_card import metrics_section
    from covid_tl.reporting.console import breakdown_table, shift_lines
    from covid_tl.reporting.results import Results

    # PA: covid 0.9, 0.4 | no-finding 0.2, 0.6.  AP: covid 0.8 | no-finding 0.7, 0.1, 0.3.
    cells = [("covid", "PA", 0.9), ("covid", "PA", 0.4), ("no_finding", "PA", 0.2), ("no_finding", "PA", 0.6),
             ("covid", "AP", 0.8), ("no_finding", "AP", 0.7), ("no_finding", "AP", 0.1), ("no_finding", "AP", 0.3)]
    manifest = Manifest.from_records({"path": f"{i}.png", "label": label, "patient_id": str(i), "source": "nih", "view": view}
                                     for i, (label, view, _) in enumerate(cells))
    result = assess(manifest, np.array([p for *_, p in cells]), 0.5, resamples=20, seed=0)
    pa, ap = result["per_view"]["PA"], result["per_view"]["AP"]
    # PA at 0.5: covid 1 of 2 called, no-finding 1 of 2 cleared; AUROC: pairs (0.9>0.2, 0.9>0.6, 0.4>0.2, 0.4<0.6) = 3/4.
    assert (pa["n"], pa["sensitivity"], pa["specificity"], pa["accuracy"], pa["auroc"]) == (4, 0.5, 0.5, 0.5, 0.75)
    # AP: covid 1 of 1, no-finding 2 of 3 cleared (0.7 called); AUROC: 0.8 above all three = 1.
    assert (ap["n"], ap["sensitivity"], ap["specificity"], ap["accuracy"], ap["auroc"]) == (4, 1.0, 2 / 3, 0.75, 1.0)

    card = "\n".join(metrics_section(Results(sets={"test": {**result, "bootstrap_ci95": {}}})))
    assert "### Per view" in card and "| test | AP | 4 | 1.000 | 0.667 | 0.750 | 1.000 |" in card
    console = Console(width=200, record=True)
    console.print(breakdown_table(result))
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in console.export_text().splitlines()]
    assert ["view", "AP", "4", "1.000", "0.667", "0.750", "1.000"] in rows 
    # All 8: covid 2 of 3 called, no-finding 3 of 5 cleared, AUROC 13 of 15 pairs.
    assert ["source", "nih", "8", "0.667", "0.600", "0.625", "0.867"] in rows
    shift = shift_summary({"val": result["per_view"]["PA"], "test": ap}, "AP", "view")
    assert shift["view"] == "AP" and shift_lines(shift).startswith("view shift: val (in distribution) -> AP (held out)")

    summary = data_summary(manifest.frame.assign(split="test"))
    assert summary["images_per_split_label_and_view"] == {"test": {"covid": {"AP": 1, "PA": 2}, "no_finding": {"AP": 3, "PA": 2}}}


def test_the_card_states_view_balanced_draws_and_a_held_out_view():
    from covid_tl.engine.model_card import data_section

    summary = {"rows": [], "images": 0, "patients": 0, "skipped": 0}
    card = "\n".join(data_section(summary, {"data": {"balance_views": True, "holdout_view": "AP", "split_seed": 1}}))
    assert "each label x view cell weighs the same" in card and "every `AP` film is the test split" in card
    card = "\n".join(data_section(summary, {"data": {"num_folds": 5, "fold": 2, "fold_split": "val", "split_seed": 1}}))
    assert "the other patients in 5 folds by patient, fold 2 is the validation split" in card
    assert "weighs the same" not in "\n".join(data_section(summary, {"data": {}}))
