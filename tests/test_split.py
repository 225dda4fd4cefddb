import numpy as np
import pytest

from covid_tl.data.manifest import Manifest
from covid_tl.data.split import split_by_patient


def make_manifest(n_patients: int = 40, images=(1, 4), seed: int = 0) -> Manifest:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = "covid" if p % 3 == 0 else "no_finding"
        for i in range(int(rng.integers(images[0], images[1] + 1))):
            rows.append({"path": f"p{p}_{i}.png", "label": label, "patient_id": str(p), "source": "x", "view": "PA"})
    return Manifest.from_records(rows)


def test_no_patient_in_two_splits():
    manifest = make_manifest()
    splits = split_by_patient(manifest, 0.2, 0.2, seed=1)
    per_patient = manifest.frame.assign(split=splits).groupby("patient_id")["split"].nunique()
    assert per_patient.max() == 1
    assert set(splits) == {"train", "val", "test"}


def test_split_is_stratified_by_label_and_sized_by_fraction():
    manifest = make_manifest(n_patients=60)
    splits = split_by_patient(manifest, 0.2, 0.2, seed=3)
    frame = manifest.frame.assign(split=splits).drop_duplicates("patient_id")
    table = frame.groupby(["label", "split"]).size().unstack()
    # 20 covid and 40 no-finding patients: 20% of each label in val and in test.
    assert table.loc["covid"].to_dict() == {"test": 4, "train": 12, "val": 4}
    assert table.loc["no_finding"].to_dict() == {"test": 8, "train": 24, "val": 8}


def test_same_seed_same_split_other_seed_other_split():
    manifest = make_manifest()
    a = split_by_patient(manifest, 0.2, 0.2, seed=7)
    assert np.array_equal(a, split_by_patient(manifest, 0.2, 0.2, seed=7))
    assert not np.array_equal(a, split_by_patient(manifest, 0.2, 0.2, seed=8))


def test_small_label_still_reaches_every_split():
    rows = [{"path": f"{p}.png", "label": "covid" if p < 3 else "no_finding", "patient_id": p, "source": "x", "view": "PA"} for p in range(20)]
    splits = split_by_patient(Manifest.from_records(rows), 0.1, 0.1, seed=0)
    assert sorted(splits[:3]) == ["test", "train", "val"]


@pytest.mark.parametrize("val,test", [(-0.1, 0.2), (0.5, 0.5), (1.0, 0.0)])
def test_bad_fractions_are_refused(val, test):
    with pytest.raises(ValueError, match="leave some data for training"):
        split_by_patient(make_manifest(), val, test, seed=0)


def test_manifest_validation_names_the_problem():
    with pytest.raises(ValueError, match="unknown label"):
        Manifest.from_records([{"path": "a", "label": "pneumonia", "patient_id": "1", "source": "x", "view": "PA"}])
    with pytest.raises(ValueError, match="lacks column"):
        Manifest.from_records([{"path": "a", "label": "covid"}])
    with pytest.raises(ValueError, match="more than once"):
        Manifest.from_records([{"path": "a", "label": "covid", "patient_id": i, "source": "x", "view": "PA"} for i in range(2)])
