import logging

import pandas as pd
import pytest

from conftest import PUBLISHED_MINI, needs_published_mini
from data_fixtures import cohen, image, nih
from covid_tl.data.sources import CohenSource, FolderSource, ManifestSource, NIHSource, SourceError


@pytest.mark.parametrize("patient_column", ["patientid", "Patientid"])
@pytest.mark.parametrize("with_folder", [True, False])
def test_cohen_keeps_covid_pa_xrays_in_both_column_spellings(tmp_path, patient_column, with_folder):
    frame = CohenSource(cohen(tmp_path, patient_column, with_folder)).frame()
    assert sorted(frame["patient_id"]) == ["cohen:1", "cohen:1", "cohen:2", "cohen:3"]
    assert set(frame["label"]) == {"covid"} and set(frame["view"]) == {"PA"}
    assert all(pd.Series(frame["path"]).map(lambda p: (tmp_path / "images").as_posix() in p))
    assert {"finding", "doi", "license"} <= set(frame.columns)  # the source's own columns kept


def test_cohen_views_and_findings_are_configurable(tmp_path):
    root = cohen(tmp_path)
    frame = CohenSource(root, views=["PA", "AP", "AP Supine"], findings={"COVID-19": "covid", "No Finding": "no_finding"}).frame()
    assert len(frame) == 7
    assert (frame["label"] == "no_finding").sum() == 1
    with pytest.raises(SourceError, match="unknown label"):
        CohenSource(root, findings={"COVID-19": "sick"})


def test_actualmed_imagename_and_figure1_patient_files(tmp_path):
    actualmed = tmp_path / "actualmed"
    image(actualmed / "images" / "A1.png")
    pd.DataFrame([{"patientid": "A1", "finding": "COVID-19", "view": "PA", "modality": "X-ray", "imagename": "A1.png"}]).to_csv(
        actualmed / "metadata.csv", index=False)
    frame = CohenSource(actualmed, name="actualmed").frame()
    assert frame.loc[0, "path"].endswith("images/A1.png") and frame.loc[0, "patient_id"] == "actualmed:A1"
    figure1 = tmp_path / "figure1"
    image(figure1 / "images" / "COVID-00003.jpg")
    pd.DataFrame([{"patientid": "COVID-00003", "finding": "COVID-19", "view": "PA", "modality": "X-ray"}]).to_csv(
        figure1 / "metadata.csv", index=False)
    frame = CohenSource(figure1, name="figure1").frame()
    assert frame.loc[0, "path"].endswith("COVID-00003.jpg")


def test_nih_finds_images_in_split_download_folders(tmp_path):
    frame = NIHSource(nih(tmp_path)).frame()
    assert set(frame["label"]) == {"no_finding"} and set(frame["view"]) == {"PA"}
    assert len(frame) == sum(1 for p in range(1, 31) for k in range(2) if p % 5 and (p + k) % 7)
    assert frame["path"].map(lambda p: "/images_00" in p).all()
    assert frame["patient_id"].str.startswith("nih:").all()


def test_missing_roots_and_files_say_which_key(tmp_path):
    with pytest.raises(SourceError, match="is not a directory"):
        CohenSource(tmp_path / "nowhere")
    with pytest.raises(SourceError, match="no metadata.csv"):
        CohenSource(tmp_path).frame()
    with pytest.raises(SourceError, match="does not exist"):
        ManifestSource(tmp_path / "m.csv").frame()


def test_manifest_csv_resolves_relative_paths_and_fills_defaults(tmp_path):
    image(tmp_path / "imgs" / "a.png")
    (tmp_path / "m.csv").write_text("path,label,patient_id\nimgs/a.png,covid,7\n")
    frame = ManifestSource(tmp_path / "m.csv").frame()
    assert frame.loc[0, "path"] == str(tmp_path / "imgs" / "a.png")
    assert frame.loc[0, "source"] == "manifest" and frame.loc[0, "view"] == "PA" and frame.loc[0, "patient_id"] == "7"


def test_class_folders_with_and_without_a_patient_table(tmp_path):
    for name in ("covid/a.png", "covid/b.png", "no_finding/c.png"):
        image(tmp_path / name)
    frame = FolderSource(tmp_path).frame()
    assert sorted(frame["label"]) == ["covid", "covid", "no_finding"]
    assert sorted(frame["patient_id"]) == ["folders:a", "folders:b", "folders:c"]
    (tmp_path / "patients.csv").write_text("file,patient_id\ncovid/a.png,P1\ncovid/b.png,P1\nno_finding/c.png,P2\n")
    frame = FolderSource(tmp_path, patients=tmp_path / "patients.csv").frame()
    assert sorted(frame["patient_id"]) == ["folders:P1", "folders:P1", "folders:P2"]


def test_nih_partial_download_uses_the_present_images_and_says_in_one_line_how_many_are_not(tmp_path, caplog):
    root = nih(tmp_path)  # 41 No Finding PA rows (see the count in the test above)
    for p in range(1, 7):  # patients 1-6 not downloaded: 9 of those rows (p=5 is not No Finding, (6, 1) is AP)
        for k in range(2):
            next(root.glob(f"images_*/images/{p:08d}_{k:03d}.png")).unlink()
    with caplog.at_level(logging.INFO, logger="covid_tl.data.sources"):
        frame = NIHSource(root).frame()
    assert len(frame) == 32 and frame["path"].map(lambda p: pd.io.common.file_exists(p)).all()
    assert [r.getMessage() for r in caplog.records if "not under" in r.getMessage()] == [
        f"nih: 9 of the 41 listed No Finding PA images are not under {root} (a partial download): using the 32 present"]
    lines = (root / "Data_Entry_2017.csv").read_text().splitlines()
    assert all(lines[n - 1].startswith(name + ",") for n, name in zip(frame["source_line"], frame["Image Index"]))
    for path in root.glob("images_*/images/*.png"):
        path.unlink()
    with pytest.raises(SourceError, match="none of the 41 No Finding PA images that Data_Entry_2017.csv lists"):
        NIHSource(root).frame()


def test_source_line_is_the_line_a_text_editor_shows(tmp_path):
    image(tmp_path / "a.png")
    image(tmp_path / "b.png")
    # header = line 1; a's quoted note spans lines 2-3; line 4 is blank; b is on line 5
    (tmp_path / "m.csv").write_text('path,label,patient_id,notes\na.png,covid,1,"two\nlines"\n\nb.png,no_finding,2,plain\n')
    assert ManifestSource(tmp_path / "m.csv").frame()["source_line"].tolist() == [2, 5]
    frame = CohenSource(cohen(tmp_path / "cohen")).frame()  # rows 1-3 of the fixture are the PA X-rays
    assert frame["source_line"].tolist() == [2, 3, 4, 5]
    for name in ("covid/x.png", "covid/y.png", "no_finding/z.png"):
        image(tmp_path / "folders" / name)
    folders = FolderSource(tmp_path / "folders").frame()  # no CSV: the place in the sorted file list
    assert dict(zip(folders["file"], folders["source_line"])) == {"covid/x.png": 1, "covid/y.png": 2, "no_finding/z.png": 3}


@needs_published_mini
def test_published_mini_nih_is_a_partial_download_and_cohen_lists_one_absent_file(caplog):
    with caplog.at_level(logging.INFO, logger="covid_tl.data.sources"):
        frame = NIHSource(PUBLISHED_MINI / "nih").frame()
    assert len(frame) == 30  # the README: 30 No Finding PA images of 112,120 listed
    # awk -F, '$2=="No Finding" && $7=="PA"' Data_Entry_2017.csv | wc -l  ->  39302
    assert any("39,272 of the 39,302 listed No Finding PA images" in r.getMessage() for r in caplog.records)
    cohen_frame = CohenSource(PUBLISHED_MINI / "cohen").frame()
    absent = cohen_frame[cohen_frame["path"].str.endswith("covid-19-pneumonia-14-PA.png")]
    assert absent["source_line"].tolist() == [13]  # grep -n pneumonia-14 metadata.csv


def test_a_folder_given_for_a_file_names_the_file_it_holds(tmp_path):
    """data=xray_mini data.path=<its folder>: the error names the manifest to give instead."""
    (tmp_path / "manifest.csv").write_text("path,label,patient_id\n")
    (tmp_path / "images").mkdir()
    with pytest.raises(SourceError) as error:
        ManifestSource(tmp_path).frame()
    assert str(error.value) == (f"manifest {str(tmp_path)!r} is a folder, not a .csv file; give the .csv file in it: "
                                f"{tmp_path / 'manifest.csv'}")
    (tmp_path / "other.csv").write_text("x\n")
    with pytest.raises(SourceError, match=f"give one of its .csv files: {tmp_path / 'manifest.csv'}, {tmp_path / 'other.csv'}$"):
        ManifestSource(tmp_path).frame()
    image(tmp_path / "covid" / "a.png")
    with pytest.raises(SourceError, match="folders.patients '.*images' is a folder, not a .csv file; it holds no .csv file$"):
        FolderSource(tmp_path, patients=tmp_path / "images").frame()


def test_a_folder_given_for_the_v7labs_masks_names_the_zip(tmp_path):
    from covid_tl.data.v7labs import CohenV7LabsLungs

    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "semantic_masks_v7labs_lungs.zip").write_bytes(b"")
    with pytest.raises(SourceError, match="cohen: v7labs masks file '.*masks' is a folder, not a .zip file; give the .zip "
                                          "file in it: .*masks/semantic_masks_v7labs_lungs.zip$"):
        CohenV7LabsLungs(tmp_path, masks=tmp_path / "masks")
