"""results.json's record: one writer, one reader, older files still read, newer ones refused;
the one number formatter."""
import json
import math

import pytest

from covid_tl.core.errors import ConfigError
from covid_tl.core.formatting import markdown_table, number
from covid_tl.reporting.results import SCHEMA, Results, cam_rows, read_results, write_results

TEST = {"n": 4, "threshold": 0.25, "sensitivity": 0.5, "specificity": 1.0, "auroc": 0.75}
POINT = {"rule": "youden", "threshold": 0.25, "temperature": 1.0, "split": "val", "n": 6}


def test_written_and_read_back_unchanged(tmp_path):
    results = Results(sets={"test": TEST, "external:views/manifest.csv": {"n": 2}}, run={"seed": 3},
                      operating_point=POINT, cam=[{"epoch": 1, "which": "best, last", "lung_fraction": 0.5}])
    path = write_results(tmp_path, results)
    assert json.loads(path.read_text())["schema"] == SCHEMA == 2
    assert read_results(tmp_path) == results == read_results(path)
    assert list(read_results(tmp_path).sets) == ["test", "external:views/manifest.csv"]  # order kept


def test_a_schema_1_file_is_read_into_the_same_record(tmp_path):
    """Before schema 2: sets at the top level, the operating point inside `run`."""
    old = {"val": {"n": 6}, "test": TEST, "shift": {"source": "c"}, "run": {"seed": 3, "operating_point": POINT}}
    (tmp_path / "results.json").write_text(json.dumps(old))
    results = read_results(tmp_path)
    assert list(results.sets) == ["val", "test"] and results.run == {"seed": 3}
    assert results.operating_point == POINT and results.shift == {"source": "c"} and results.threshold == 0.25
    assert read_results_kind({"train": {"n": 3, "dice": 0.9}}, tmp_path) == "segmenter"


def read_results_kind(data, folder):
    (folder / "results.json").write_text(json.dumps(data))
    return read_results(folder).kind


def test_missing_broken_newer_and_unknown_files_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"no results.json at .* \(did the run finish\?\)"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text("{")
    with pytest.raises(ConfigError, match="cannot be read as JSON"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"schema": 3, "sets": {}}))
    with pytest.raises(ConfigError, match="schema 3; this covid-tl reads schema 2 and older"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"schema": 2, "sets": {}, "cams": {}}))
    with pytest.raises(ConfigError, match="keys schema 2 does not have: cams"):
        read_results(tmp_path)
    with pytest.raises(ConfigError, match="no set 'tset'; they have: test"):
        Results(sets={"test": TEST}).set("tset")


def test_threshold_is_the_operating_points_else_the_sets():
    assert Results(sets={"test": TEST}, operating_point={**POINT, "threshold": 0.125}).threshold == 0.125
    assert Results(sets={"test": TEST}).threshold == 0.25
    assert Results(sets={"val": {"dice": 0.9}}, kind="segmenter").threshold is None


def test_cam_rows_take_the_best_and_the_last_epoch_and_the_record_picks_the_best():
    scores = {0: {"artifact_fraction": 0.5, "lung_fraction": 0.1}, 1: {"artifact_fraction": 0.25, "lung_fraction": 0.4},
              2: {"artifact_fraction": 0.125, "lung_fraction": 0.6}}
    rows = cam_rows(scores, 1)
    assert rows == [{"epoch": 1, "which": "best", "artifact_fraction": 0.25, "lung_fraction": 0.4},
                    {"epoch": 2, "which": "last", "artifact_fraction": 0.125, "lung_fraction": 0.6}]
    assert Results(cam=rows).cam_scores() == {"artifact_fraction": 0.25, "lung_fraction": 0.4}
    assert cam_rows(scores, 2) == [{"epoch": 2, "which": "best, last", "artifact_fraction": 0.125, "lung_fraction": 0.6}]
    assert Results(cam=cam_rows(scores, 7)).cam_scores() == {"artifact_fraction": 0.125, "lung_fraction": 0.6}  # last
    assert cam_rows({}, 0) == [] and Results().cam_scores() == {}


def test_one_number_format_everywhere():
    assert number(0.91234) == "0.912" and number(0.5, [0.25, 0.75]) == "0.500 [0.250, 0.750]"
    assert number(None) == number(math.nan) == "-" and number(12) == "12"
    assert number(0.5, [math.nan, 0.75]) == "0.500"  # half an interval is no interval
    assert markdown_table(["set", "auroc"], [["test", 0.75], ["val", None]]) == [
        "| set | auroc |", "|---|---|", "| test | 0.750 |", "| val | - |"]
