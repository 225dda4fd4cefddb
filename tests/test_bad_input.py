"""Bad input is found at setup: every file the run uses is decoded there, so nothing fails after."""
import logging
import struct
import zlib

import numpy as np
import pandas as pd
import pytest

from conftest import PUBLISHED_MINI, TINY, needs_published_mini, run_script
from data_fixtures import cohen, image, nih
from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.sources import CohenSource, ManifestSource, NIHSource
from covid_tl.data.validate import BadInputError
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.preprocess.cache import PreprocessCache
from covid_tl.preprocess.pipeline import identity
from covid_tl.reporting.results import read_results

SPEC = InputSpec(size=16)


def garbage_idat(path, seed=0):
    """A PNG whose header and chunk checksums are right but whose image data is noise."""
    data = image(path, seed=seed).read_bytes()
    out, pos = bytearray(data[:8]), 8
    rng = np.random.default_rng(seed)
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = rng.bytes(length) if kind == b"IDAT" else data[pos + 8:pos + 8 + length]
        out += struct.pack(">I", length) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        pos += 12 + length
    path.write_bytes(bytes(out))
    return path


#: Files the header check passes and no decoder reads, by name.
UNDECODABLE = {
    "idat.png": garbage_idat,
    "junk.dcm": lambda path: path.write_bytes(b"not a DICOM file at all"),
    "text.bmp": lambda path: path.write_text("BM, then a letter"),
    "text.tif": lambda path: path.write_text("II, then a letter"),
    "text.tiff": lambda path: path.write_text("MM, then a letter"),
}


def manifest_with(tmp_path, bad_files, good=8, lung_masks=None):
    """`good` readable images (alternating labels, one patient each) on lines 2.., then `bad_files`."""
    rows = [(image(tmp_path / f"ok{i}.png", seed=i).name, "covid" if i % 2 else "no_finding", f"p{i}") for i in range(good)]
    for i, (name, write) in enumerate(bad_files.items()):
        write(tmp_path / name)
        rows.append((name, "covid" if i % 2 else "no_finding", f"q{i}"))
    frame = pd.DataFrame(rows, columns=["path", "label", "patient_id"])
    if lung_masks is not None:
        frame["lung_mask"] = lung_masks
    frame.to_csv(tmp_path / "m.csv", index=False)
    return ManifestSource(tmp_path / "m.csv")


def test_each_kind_of_undecodable_file_stops_the_run_at_setup(tmp_path):
    dm = XrayDataModule({"m": manifest_with(tmp_path, UNDECODABLE)}, SPEC, val_fraction=0.25, test_fraction=0.25)
    with pytest.raises(BadInputError) as error:
        dm.setup()
    message = str(error.value)
    assert message.startswith("5 of 13 listed images cannot be used (5 undecodable;")
    for line, name in enumerate(UNDECODABLE, start=10):
        assert any(f"m.csv line {line}: " in text and name in text and "undecodable" in text
                   for text in message.splitlines()), (name, message)
    assert list(error.value.rows["line"]) == [10, 11, 12, 13, 14]


def test_skip_leaves_undecodable_files_out_and_every_image_left_loads(tmp_path, caplog):
    dm = XrayDataModule({"m": manifest_with(tmp_path, UNDECODABLE)}, SPEC, val_fraction=0.25, test_fraction=0.25,
                        on_bad="skip")
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert [r.getMessage()[:30] for r in caplog.records if r.levelno == logging.WARNING] == ["skipping 5 image(s): undecodab"]
    assert sorted(dm.splits_frame()["path"].map(lambda p: p.split("/")[-1])) == [f"ok{i}.png" for i in range(8)]
    for split in ("train", "val", "test"):
        dataset = dm.dataset(split)
        assert all(dataset[i][0].shape == (1, 16, 16) for i in range(len(dataset)))
    summary = dm.write_data_files(tmp_path)
    bad = pd.read_csv(tmp_path / "bad_rows.csv")
    assert summary["skipped"] == len(bad) == 5 and list(bad["line"]) == [10, 11, 12, 13, 14]
    assert set(bad["kind"]) == {"undecodable"} and (bad["listed_in"] == str(tmp_path / "m.csv")).all()


def test_dicom_without_pydicom_is_found_at_setup(tmp_path, without_pydicom):
    files = {"scan.dcm": lambda path: path.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)}
    dm = XrayDataModule({"m": manifest_with(tmp_path, files)}, SPEC, val_fraction=0.25, test_fraction=0.25)
    with pytest.raises(BadInputError, match=r"m.csv line 10: .*scan.dcm \(manifest\): undecodable \(is DICOM, which needs pydicom"):
        dm.setup()


def test_an_unreadable_lung_mask_is_found_at_setup_not_by_the_cam_callback(tmp_path):
    masks = [str(image(tmp_path / f"mask{i}.png", seed=i)) for i in range(8)]
    (tmp_path / "mask3.png").write_text("junk")
    dm = XrayDataModule({"m": manifest_with(tmp_path, {}, lung_masks=masks)}, SPEC, val_fraction=0.25, test_fraction=0.25)
    with pytest.raises(BadInputError, match=r"m.csv line 5: .*ok3.png \(manifest\): undecodable \(lung mask .*mask3.png"):
        dm.setup()


def test_an_error_names_at_most_20_rows_and_counts_each_kind(tmp_path):
    files = {f"gone{i:02d}.png": lambda path: None for i in range(25)}
    files["cut.png"] = lambda path: path.write_bytes(image(path).read_bytes()[:40])
    dm = XrayDataModule({"m": manifest_with(tmp_path, files)}, SPEC, val_fraction=0.25, test_fraction=0.25)
    with pytest.raises(BadInputError) as error:
        dm.setup()
    lines = str(error.value).splitlines()
    assert lines[0].startswith("26 of 34 listed images cannot be used (25 missing, 1 corrupt;")
    assert len(lines) == 1 + 20 + 1 and lines[-1] == "  ... and 6 more"
    listing = tmp_path / "m.csv"  # named by its path: two listings may share a file name
    assert lines[1].startswith(f"  {listing} line 10: ") and lines[20].startswith(f"  {listing} line 29: ")
    assert len(error.value.rows) == 26 and error.value.rows["line"].max() == 35


class Counting:
    """Preprocessing that counts its calls (from several threads: list.append is atomic)."""

    def __init__(self):
        self.calls = []

    def __call__(self, image):
        self.calls.append(1)
        return identity(255 - image)


class CountingSource(ManifestSource):
    loads: list

    def load_image(self, row):
        self.loads.append(row["path"])
        return super().load_image(row)


def test_with_a_cache_setup_decodes_and_stores_each_image_once_and_epochs_read_entries(tmp_path):
    source = CountingSource(manifest_with(tmp_path, {}, good=12).path)
    source.loads = []
    preprocess = Counting()
    dm = XrayDataModule({"m": source}, SPEC, preprocess=preprocess, cache=PreprocessCache(tmp_path / "cache", {"n": 1}),
                        val_fraction=0.25, test_fraction=0.25)
    dm.setup()
    assert len(source.loads) == len(preprocess.calls) == 12
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 24  # each image prepared, and its 16 px model input
    for split in ("train", "val", "test"):
        dataset = dm.dataset(split, train=split == "train")
        assert all(dataset[i][0].shape == (1, 16, 16) for i in range(len(dataset)))
    assert len(source.loads) == len(preprocess.calls) == 12  # nothing decoded twice


def test_balanced_skip_replaces_an_undecodable_pick_and_stays_balanced(tmp_path):
    def datamodule():
        sources = {"cohen": CohenSource(tmp_path / "cohen"), "nih": NIHSource(tmp_path / "nih")}
        return XrayDataModule(sources, SPEC, balance=True, extra_no_finding=5, val_fraction=0.25, test_fraction=0.25,
                              on_bad="skip")

    cohen(tmp_path / "cohen")
    nih(tmp_path / "nih", n_patients=12)
    clean = datamodule()
    clean.setup()
    picked = clean.manifest.frame.query("source == 'nih'")["path"].iloc[0]
    garbage_idat(tmp_path / picked)
    dm = datamodule()
    dm.setup()
    assert picked not in set(dm.splits_frame()["path"])
    assert dm.manifest.counts() == clean.manifest.counts() == {"no_finding": 4, "covid": 4}
    assert len(dm.subset("extra_no_finding")) == 5
    assert list(dm.bad_rows["path"]) == [picked] and dm.bad_rows["reason"].iloc[0].startswith("undecodable")


def error_lines(stderr):
    """The run's error message (libpng and OpenCV print their own lines before it)."""
    lines = stderr.strip().splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("error: ")):]


def run_on_manifest(tmp_path, on_bad):
    source = manifest_with(tmp_path / "data", UNDECODABLE, good=16)
    run_dir = tmp_path / "run"
    proc = run_script("train.py", f"hydra.run.dir={run_dir}", "data=manifest", f"data.path={source.path}",
                      f"data.on_bad={on_bad}", "data.val_fraction=0.25", "data.test_fraction=0.25", *TINY[2:])
    return proc, run_dir


@pytest.mark.slow
def test_a_run_with_undecodable_files_skips_them_and_completes(tmp_path):
    proc, run_dir = run_on_manifest(tmp_path, "skip")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = read_results(run_dir)
    assert sum(results.sets[split]["n"] for split in ("train", "val", "test")) == 16
    assert list(pd.read_csv(run_dir / "bad_rows.csv")["line"]) == [18, 19, 20, 21, 22]


@pytest.mark.slow
def test_a_run_with_undecodable_files_stops_at_setup_with_one_short_message(tmp_path):
    proc, run_dir = run_on_manifest(tmp_path, "raise")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    error = error_lines(proc.stderr)
    assert error[0].startswith("error: 5 of 21 listed images cannot be used (5 undecodable;") and len(error) == 7
    assert error[-1] == f"all 5 listed in {run_dir / 'bad_rows.csv'}"
    assert len(pd.read_csv(run_dir / "bad_rows.csv")) == 5 and not (run_dir / "results.json").exists()


@pytest.mark.slow
@needs_published_mini
def test_published_mini_stops_on_cohens_absent_file_only(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_script("train.py", f"hydra.run.dir={run_dir}", "data=cohen_nih", "trainer.max_epochs=1",
                      f"data.sources.cohen.root={PUBLISHED_MINI / 'cohen'}", f"data.sources.nih.root={PUBLISHED_MINI / 'nih'}")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    error = error_lines(proc.stderr)
    assert error[0].startswith("error: 1 of 54 listed images cannot be used (1 missing;")  # Cohen 24 (1 absent), NIH 30
    assert error[1].startswith(f"  {PUBLISHED_MINI / 'cohen' / 'metadata.csv'} line 13: ") and error[1].endswith("covid-19-pneumonia-14-PA.png (cohen): missing")
    assert len(error) == 3 and list(pd.read_csv(run_dir / "bad_rows.csv")["line"]) == [13]
    assert sum("not under" in line for line in proc.stdout.splitlines()) == 1  # the partial download: one info line
