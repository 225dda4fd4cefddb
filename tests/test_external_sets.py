"""evaluate.py external=[...]: every set named by its path, each file once, its bad rows named by
the CSV's path and line, and the patients it shares with the checkpoint's training data counted."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY, XRAY_MINI, XRAY_VIEWS, composed, needs_xray_views, untrained_checkpoint_file
from data_fixtures import image
from covid_tl.data.external import external_names, patient_overlap
from covid_tl.data.manifest import Manifest
from covid_tl.data.validate import BadInputError
from covid_tl.core.errors import ConfigError
from covid_tl.reporting.results import read_results
from covid_tl.tasks.evaluate import evaluate

def manifest(csv: Path, n: int, missing: tuple[int, ...] = (), source: str = "cohen") -> Path:
    """A manifest of `n` tiny films (alternating labels, one patient each) on lines 2..n+1; the
    films at `missing` positions are listed but not written."""
    rows = []
    for i in range(n):
        path = csv.parent / "images" / f"{i}.png"
        if i not in missing:
            image(path, seed=i, size=16)
        rows.append({"path": f"images/{i}.png", "label": "covid" if i % 2 else "no_finding",
                     "patient_id": f"{csv.parent.name}:{i}", "source": source})
    csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def run(ckpt: Path, out: Path, *overrides: str) -> dict:
    return evaluate(composed("evaluate", f"ckpt_path={ckpt}", "bootstrap=20", *overrides, run_dir=str(out)), out)


def test_names_are_the_shortest_path_tails_that_tell_the_sets_apart():
    paths = ["/d/site_a/manifest.csv", "/d/site_b/manifest.csv", "/e/site_a/manifest.csv", "/d/other.csv"]
    assert external_names(paths) == {"/d/site_a/manifest.csv": "external:d/site_a/manifest.csv",
                                     "/d/site_b/manifest.csv": "external:site_b/manifest.csv",
                                     "/e/site_a/manifest.csv": "external:e/site_a/manifest.csv",
                                     "/d/other.csv": "external:other.csv"}
    assert external_names(["/x/one.csv"]) == external_names("/x/one.csv") == {"/x/one.csv": "external:one.csv"}


def test_two_manifests_of_one_file_name_get_a_row_each(untrained_checkpoint, tmp_path):
    a, b = manifest(tmp_path / "a" / "m.csv", 3), manifest(tmp_path / "b" / "m.csv", 5)
    results = run(untrained_checkpoint, tmp_path / "out", f"external=[{a},{b}]")
    assert {k: v["n"] for k, v in results.sets.items() if k.startswith("external")} == {"external:a/m.csv": 3,
                                                                                   "external:b/m.csv": 5}
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert predictions["set"].value_counts().to_dict() == {"test": results.sets["test"]["n"], "external:b/m.csv": 5,
                                                          "external:a/m.csv": 3}
    # Synthetic training patients are no patient of these sets: checked, and none shared.
    written = read_results(tmp_path / "out").sets
    assert written["external:a/m.csv"]["overlap"] == {"train_patients": 0, "val_patients": 0, "images": 0}
    assert set(written) == {"test", "external:a/m.csv", "external:b/m.csv"}


def test_the_same_file_twice_is_refused_however_spelled(untrained_checkpoint, tmp_path):
    csv = manifest(tmp_path / "a" / "m.csv", 2)
    (tmp_path / "link.csv").symlink_to(csv)
    for twice in (f"[{csv},{csv}]", f"[{csv},{tmp_path / 'a' / '..' / 'a' / 'm.csv'}]", f"[{csv},{tmp_path / 'link.csv'}]"):
        with pytest.raises(ConfigError, match=f"external lists the file {csv} twice"):
            run(untrained_checkpoint, tmp_path / "out", f"external={twice}")
        assert not (tmp_path / "out").exists()  # refused before any work


def test_bad_rows_are_named_by_the_csv_path_and_line(untrained_checkpoint, tmp_path):
    csv = manifest(tmp_path / "site" / "m.csv", 4, missing=(1,))  # film 1 is on line 3
    with pytest.raises(BadInputError) as error:
        run(untrained_checkpoint, tmp_path / "out", f"external=[{csv}]")
    lines = str(error.value).splitlines()
    assert lines[1] == f"  {csv} line 3: {csv.parent / 'images' / '1.png'} (cohen): missing"
    assert pd.read_csv(tmp_path / "out" / "bad_rows.csv")[["listed_in", "line"]].values.tolist() == [[str(csv), 3]]


def test_the_advice_of_a_bad_input_error_works_as_printed(untrained_checkpoint, tmp_path):
    csv = manifest(tmp_path / "site" / "m.csv", 4, missing=(1,))
    with pytest.raises(BadInputError) as error:
        run(untrained_checkpoint, tmp_path / "out", f"external=[{csv}]")
    advice = re.search(r"; (\S+=skip) leaves them out", str(error.value)).group(1)
    results = run(untrained_checkpoint, tmp_path / "skipped", f"external=[{csv}]", advice)
    assert advice == "data.on_bad=skip" and results.sets["external:m.csv"]["n"] == 3
    assert pd.read_csv(tmp_path / "skipped" / "bad_rows.csv")[["listed_in", "line"]].values.tolist() == [[str(csv), 3]]


def test_the_advice_works_for_the_checkpoints_own_data_too(tmp_path):
    """A film of the training data gone since training: evaluate stops, and the advice leaves it out."""
    csv = manifest(tmp_path / "data" / "m.csv", 8)
    ckpt = untrained_checkpoint_file(tmp_path / "m.ckpt", "data=manifest", f"data.path={csv}", "data.val_fraction=0.25",
                                     "data.test_fraction=0.25", *TINY[2:])
    (csv.parent / "images" / "5.png").unlink()
    with pytest.raises(BadInputError, match="1 of 8 listed images cannot be used .*; data.on_bad=skip leaves them out"):
        run(ckpt, tmp_path / "out")
    results = run(ckpt, tmp_path / "skipped", "data.on_bad=skip")
    assert pd.read_csv(tmp_path / "skipped" / "bad_rows.csv")[["listed_in", "line"]].values.tolist() == [[str(csv), 7]]
    assert "5.png" not in pd.read_csv(tmp_path / "skipped" / "predictions.csv")["path"].str.cat()
    assert results.sets["test"]["n"] == 2  # a patient of each label: 1 of 3 and 1 of 4 (split.py's _allocate)


def test_with_other_data_the_overlap_is_still_with_the_checkpoints_own_training_data(tmp_path):
    trained_on = manifest(tmp_path / "mine" / "m.csv", 8)  # 4 patients a label: 2 train, 1 val, 1 test each
    other = manifest(tmp_path / "theirs" / "m.csv", 8)
    ckpt = untrained_checkpoint_file(tmp_path / "m.ckpt", "data=manifest", f"data.path={trained_on}",
                                     "data.val_fraction=0.25", "data.test_fraction=0.25", *TINY[2:])
    results = run(ckpt, tmp_path / "out", "data=manifest", f"data.path={other}", f"external=[{trained_on}]")
    assert results.sets["test"]["n"] == 2 and set(results.sets) == {"test", "external:m.csv"}
    assert results.sets["external:m.csv"]["overlap"] == {"train_patients": 4, "val_patients": 2, "images": 6}


def test_overlap_counts_patients_of_train_and_val_and_their_images(caplog):
    def listed(*patients):
        return Manifest.from_records({"path": f"{p}_{i}.png", "label": "covid", "patient_id": p, "source": "s",
                                      "view": "PA"} for i, p in enumerate(patients))

    external = listed("s:1", "s:1", "s:2", "s:3", "s:4", "s:9")
    with caplog.at_level(logging.WARNING):
        overlap = patient_overlap("external:x.csv", external, train=listed("s:1", "s:2", "s:5"), val=listed("s:3"))
    assert overlap == {"train_patients": 2, "val_patients": 1, "images": 4}  # s:1 twice, s:2, s:3
    assert "external:x.csv shares 3 of its 5 patients (4 of its 6 images)" in caplog.text


@needs_xray_views
def test_xray_views_and_xray_mini_each_get_their_row_and_their_overlap(tmp_path_factory, caplog):
    """A checkpoint of xray-mini: xray-views (196 AP films) shares 7 NIH patients with xray-mini
    (its README); xray-mini itself shares every patient outside the test split."""
    tmp = tmp_path_factory.mktemp("xray_mini")
    ckpt = untrained_checkpoint_file(tmp / "xray_mini.ckpt", "data=xray_mini", f"data.path={XRAY_MINI / 'manifest.csv'}",
                                     *TINY[2:])
    views, mini = XRAY_VIEWS / "manifest.csv", XRAY_MINI / "manifest.csv"
    with caplog.at_level(logging.WARNING):
        results = run(ckpt, tmp / "out", f"external=[{views},{mini}]")
    assert results.sets["external:xray-views/manifest.csv"]["n"] == 196 and results.sets["external:xray-mini/manifest.csv"]["n"] == 174
    predictions = pd.read_csv(tmp / "out" / "predictions.csv", dtype={"patient_id": str})
    test = predictions[predictions["set"] == "test"]
    shared = set(pd.read_csv(views)["patient_id"]) & set(pd.read_csv(mini)["patient_id"])
    assert len(shared) == 7
    outside_test = shared - set(test["patient_id"])
    overlap = results.sets["external:xray-views/manifest.csv"]["overlap"]
    assert overlap["train_patients"] + overlap["val_patients"] == len(outside_test)
    in_views = pd.read_csv(views)["patient_id"]
    assert overlap["images"] == int(in_views.isin(outside_test).sum())
    if outside_test:
        assert f"external:xray-views/manifest.csv shares {len(outside_test)} of its 126 patients" in caplog.text
    itself = results.sets["external:xray-mini/manifest.csv"]["overlap"]
    assert itself["train_patients"] + itself["val_patients"] == 144 - test["patient_id"].nunique()
    assert itself["images"] == 174 - len(test) and itself["val_patients"] > 0
