"""An input is bounded, and nothing fails after setup (issue #18).

Decompression bombs (a 30000 x 30000 PNG of under 1 MB) are refused from their header before
any decode; 16-bit pixels become uint8 without full-size float64 copies; a file removed or
changed after setup is served from the cache, or skipped with one warning; a broken link is a
bad row, never dropped in silence."""
import json
import logging
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import PEAK_RSS, ROOT
from data_fixtures import image, write_dicom
from covid_tl.data import images as images_module
from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.images import MAX_MEGAPIXELS, Header, check_image_file, image_files, read_header, to_uint8
from covid_tl.data.sources import ManifestSource
from covid_tl.data.validate import BadInputError
from covid_tl.core.errors import ConfigError
from covid_tl.preprocess.cache import PreprocessCache
from covid_tl.preprocess.model_input import InputSpec

SPEC = InputSpec(size=16)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def black_png(path, width: int, height: int, bits: int):
    """A valid grey PNG of zeros, compressed row block by row block (a bomb in well under 1 MB)."""
    row = b"\0" * (1 + (width * bits + 7) // 8)  # filter byte, then the packed samples
    compressor, rows = zlib.compressobj(9), 100
    idat = b"".join(compressor.compress(row * min(rows, height - start)) for start in range(0, height, rows))
    header = struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat + compressor.flush())
                     + png_chunk(b"IEND", b""))
    return path


def jpeg_frame(path, width: int, height: int):
    """A JPEG's markers up to its frame header (APP0, a comment, SOF0), then the end marker."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    comment = b"\xff\xfe" + struct.pack(">H", 7) + b"bombs"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    path.write_bytes(b"\xff\xd8" + app0 + comment + sof0 + b"\xff\xd9")
    return path


def dicom_header(path, rows: int, columns: int):
    """A DICOM whose header claims rows x columns 16-bit pixels (its pixel data is 4 pixels)."""
    return write_dicom(path, np.zeros((2, 2), np.uint16), shape=(rows, columns))


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """The tester's two PNG bombs: 30000^2 1-bit (900 MP) and 15000^2 16-bit (225 MP)."""
    folder = tmp_path_factory.mktemp("bombs")
    return [black_png(folder / "wide.png", 30000, 30000, 1), black_png(folder / "deep.png", 15000, 15000, 16)]


def test_the_bombs_are_small_files(bombs):
    assert [path.stat().st_size < 1_000_000 for path in bombs] == [True, True]


def test_header_sizes_of_each_format_are_read_without_decoding(tmp_path):
    import cv2
    pil = pytest.importorskip("PIL.Image")
    grey, deep = np.zeros((37, 53), np.uint8), np.zeros((37, 53), np.uint16)
    for name, pixels in (("a.png", grey), ("b.png", deep), ("a.bmp", grey), ("a.tif", grey), ("b.tif", deep)):
        assert cv2.imwrite(str(tmp_path / name), pixels)
    picture = pil.fromarray(grey)
    exif = picture.getexif()
    exif[0x0112] = 6  # an EXIF segment (APP1) before the frame header
    picture.save(tmp_path / "exif.jpg", exif=exif)
    picture.save(tmp_path / "progressive.jpg", progressive=True)
    expected = {"a.png": 8, "b.png": 16, "a.bmp": 8, "a.tif": 8, "b.tif": 16, "exif.jpg": 8, "progressive.jpg": 8}
    assert {name: read_header(tmp_path / name) for name in expected} == {
        name: Header(53, 37, bits) for name, bits in expected.items()}
    assert read_header(dicom_header(tmp_path / "a.dcm", 37, 53)) == Header(53, 37, 16)


def test_bombs_are_refused_from_their_header(bombs, tmp_path):
    wide, deep = bombs
    assert check_image_file(wide) == "too large (30000 x 30000 px, 1-bit: 900.0 MP, over the 50 MP limit, max_megapixels)"
    assert check_image_file(deep) == "too large (15000 x 15000 px, 16-bit: 225.0 MP, over the 50 MP limit, max_megapixels)"
    assert check_image_file(deep, max_megapixels=300) is None  # the limit is the caller's
    assert check_image_file(jpeg_frame(tmp_path / "a.jpg", 20000, 10000)).startswith("too large (20000 x 10000 px, 8-bit: 200.0 MP")
    assert check_image_file(jpeg_frame(tmp_path / "b.jpg", 7000, 7000)) is None  # 49 MP
    assert check_image_file(dicom_header(tmp_path / "a.dcm", 8000, 8000)).startswith("too large (8000 x 8000 px, 16-bit: 64.0 MP")
    no_frame = tmp_path / "c.jpg"
    no_frame.write_bytes(b"\xff\xd8\xff\xda\x00\x02\xff\xd9")  # a scan with no frame header before it
    assert check_image_file(no_frame) == "corrupt (JPEG frame header missing)"


def test_to_uint8_by_hand_and_as_the_float64_stretch(monkeypatch):
    # low 1000, high 5000: (v - 1000) / 4000 * 255 = 0, 63.75, 191.25, 255
    assert to_uint8(np.array([[1000, 2000], [4000, 5000]], np.uint16)).tolist() == [[0, 64], [191, 255]]
    pixels = np.random.default_rng(0).integers(100, 60000, (301, 257), dtype=np.uint16)
    values = pixels.astype(np.float64)
    old = np.round((values - values.min()) / (values.max() - values.min()) * 255).astype(np.uint8)
    new = to_uint8(pixels)
    assert new.dtype == np.uint8 and np.abs(new.astype(int) - old).max() <= 1
    assert (new == old).mean() > 0.999
    monkeypatch.setattr(images_module, "CONVERT_BLOCK", 1000)  # blocks of 3 rows: the same result
    assert np.array_equal(to_uint8(pixels), new)
    assert np.array_equal(to_uint8(pixels.astype(np.float64) * 0.5 - 7), new)  # DICOM after its LUTs: floats


def manifest(tmp_path, extra=(), good=8, size=24):
    """`good` readable films (alternating labels, one patient each), then `extra` (name, label)."""
    rows = [(image(tmp_path / f"ok{i}.png", seed=i, size=size).name, "covid" if i % 2 else "no_finding", f"p{i}")
            for i in range(good)]
    rows += [(name, label, f"q{i}") for i, (name, label) in enumerate(extra)]
    pd.DataFrame(rows, columns=["path", "label", "patient_id"]).to_csv(tmp_path / "m.csv", index=False)
    return {"m": ManifestSource(tmp_path / "m.csv")}


def test_data_max_megapixels_decides_which_film_is_too_large(tmp_path):
    image(tmp_path / "big.png", size=40)  # 1600 px = 0.0016 MP; the others 24^2 = 0.000576 MP
    sources = manifest(tmp_path, [("big.png", "covid")])
    dm = XrayDataModule(sources, SPEC, val_fraction=0.25, test_fraction=0.25, on_bad="skip", max_megapixels=0.001)
    dm.setup()
    assert dm.bad_rows[["line", "kind", "reason"]].values.tolist() == [
        [10, "too large", "too large (40 x 40 px, 8-bit: 0.0 MP, over the 0.001 MP limit, max_megapixels)"]]
    assert len(dm.splits_frame()) == 8
    with pytest.raises(BadInputError, match="1 too large"):
        XrayDataModule(sources, SPEC, val_fraction=0.25, test_fraction=0.25, max_megapixels=0.001).setup()
    everything = XrayDataModule(sources, SPEC, val_fraction=0.25, test_fraction=0.25, max_megapixels=0.002)
    everything.setup()
    assert len(everything.splits_frame()) == 9
    from omegaconf import OmegaConf
    for config in ("conf/data/_base.yaml", "conf/predict.yaml"):
        assert OmegaConf.load(ROOT / config).max_megapixels == MAX_MEGAPIXELS


def test_a_broken_link_is_a_bad_row_with_its_target_named(tmp_path):
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    dm = XrayDataModule(manifest(tmp_path, [("gone.png", "covid")]), SPEC, val_fraction=0.25, test_fraction=0.25,
                        on_bad="skip")
    dm.setup()
    assert dm.bad_rows[["line", "kind", "reason"]].values.tolist() == [
        [10, "missing", f"missing (broken link to {tmp_path / 'nowhere.png'})"]]
    assert image_files(str(tmp_path / "*.png")) == sorted(str(p) for p in tmp_path.glob("*.png"))  # kept, 9 of them
    assert len(image_files(str(tmp_path / "*.png"))) == 9


def test_predict_lists_a_broken_link_and_a_bomb_in_bad_rows(tmp_path, bombs):
    from covid_tl.data.dataset import file_images
    from covid_tl.data.validate import readable_files

    folder = tmp_path / "scans"
    image(folder / "a.png")
    (folder / "b.png").symlink_to(bombs[0])
    (folder / "c.png").symlink_to(folder / "nowhere.png")
    paths = image_files(str(folder / "*"))
    rows = readable_files(paths, file_images().check, "scans/*", tmp_path)
    assert rows == [{"path": str(folder / "a.png")}]
    bad = pd.read_csv(tmp_path / "bad_rows.csv")
    assert bad[["line", "kind"]].values.tolist() == [[2, "too large"], [3, "missing"]]
    assert bad["reason"].iloc[1] == f"missing (broken link to {folder / 'nowhere.png'})"


def cached_datamodule(tmp_path, cache: bool):
    dm = XrayDataModule(manifest(tmp_path), SPEC, val_fraction=0.25, test_fraction=0.25,
                        cache=PreprocessCache(tmp_path / "cache", {"test": 1}) if cache else None)
    dm.setup()
    return dm


def test_a_film_removed_or_changed_after_setup_is_served_from_its_cache_entry(tmp_path):
    dm = cached_datamodule(tmp_path, cache=True)
    train = dm.dataset("train")
    before = [train[i][0] for i in range(len(train))]
    gone, changed = train.rows[0]["path"], train.rows[1]["path"]
    os.remove(gone)
    image(Path(changed), seed=99)  # other pixels under the same name
    again = dm.dataset("train")
    assert all(np.array_equal(again[i][0], before[i]) for i in range(len(train)))
    assert again.skipped == {}


def test_a_film_removed_after_setup_without_a_cache_is_skipped_with_one_warning(tmp_path, caplog):
    dm = cached_datamodule(tmp_path, cache=False)
    train = dm.dataset("train")
    targets = train.targets.tolist()
    i = 0
    j = next(k for k in range(1, len(train)) if targets[k] == targets[i])  # the next row of its label
    expected = train[j][0]
    os.remove(train.rows[i]["path"])
    with caplog.at_level(logging.WARNING):
        first, second = train[i], train[i]
    assert np.array_equal(first[0], expected) and int(first[1]) == targets[i]  # a same-label substitute
    assert np.array_equal(second[0], expected)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("skipping row 0, unreadable since setup")
    assert list(train.skipped) == [0]


MEASURE = PEAK_RSS.replace("{", "{{").replace("}", "}}") + """
import json, sys
from pathlib import Path
import pandas as pd
{body}
print(json.dumps({{"peak_gb": peak_bytes() / 1024**3, "result": result}}))
"""

SETUP = """
from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.sources import ManifestSource
from covid_tl.preprocess.model_input import InputSpec
dm = XrayDataModule({"m": ManifestSource(sys.argv[1])}, InputSpec(size=16), val_fraction=0.25, test_fraction=0.25,
                    on_bad="skip")
dm.setup()
result = dm.bad_rows["reason"].tolist()
"""

PREDICT = """
from covid_tl.data.dataset import file_images
from covid_tl.data.images import image_files
from covid_tl.data.validate import readable_files
rows = readable_files(image_files(sys.argv[1]), file_images().check, "scans", Path(sys.argv[2]))
result = pd.read_csv(Path(sys.argv[2]) / "bad_rows.csv")["reason"].tolist()
"""


def measured(body: str, *args: str) -> dict:
    """What `body` sets as `result`, and the peak memory of the process that ran it."""
    done = subprocess.run([sys.executable, "-c", MEASURE.format(body=body), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_setup_refuses_the_bombs_in_a_manifest_within_1_5_gb(tmp_path, bombs):
    manifest(tmp_path, [(str(bombs[0]), "covid"), (str(bombs[1]), "no_finding")])
    run = measured(SETUP, str(tmp_path / "m.csv"))
    assert [reason.split(" (")[0] for reason in run["result"]] == ["too large", "too large"]
    assert run["peak_gb"] < 1.5, run


@pytest.mark.slow
def test_predict_refuses_the_bombs_within_1_5_gb(tmp_path, bombs):
    folder = tmp_path / "scans"
    image(folder / "a.png")
    for bomb in bombs:
        (folder / bomb.name).symlink_to(bomb)
    run = measured(PREDICT, str(folder / "*"), str(tmp_path))
    assert [reason.split(" (")[0] for reason in run["result"]] == ["too large", "too large"]
    assert run["peak_gb"] < 1.5, run


def test_explain_checks_its_files_like_predict_and_takes_the_first_n(untrained_checkpoint, bombs, tmp_path):
    """explain.py images=...: a bomb and a broken link are bad rows (never decoded), and of the
    readable files the first n are explained."""
    from conftest import composed
    from covid_tl.tasks.explain import explain

    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(3):
        image(scans / f"film{i}.png", seed=i)
    (scans / "zbomb.png").symlink_to(bombs[0])
    (scans / "zlink.png").symlink_to(tmp_path / "gone.png")
    out = tmp_path / "out"
    table = explain(composed("explain", f"ckpt_path={untrained_checkpoint}", f"images={scans}/*.png", "n=2"), out)
    assert [p.split("/")[-1] for p in table["path"]] == ["film0.png", "film1.png"]
    bad = pd.read_csv(out / "bad_rows.csv")
    assert sorted(bad["path"].map(lambda p: p.split("/")[-1])) == ["zbomb.png", "zlink.png"]
    assert set(bad["kind"]) == {"too large", "missing"}


def test_a_folder_means_its_own_image_files_sorted(tmp_path):
    """images=<folder>: its image files by suffix, sorted; not its notes or its subfolders'
    files (a dataset folder keeps lung masks in one)."""
    for name in ("b.png", "a.JPG", "c.dcm"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "a.png").write_bytes(b"x")
    assert image_files(str(tmp_path)) == [str(tmp_path / n) for n in ("a.JPG", "b.png", "c.dcm")]
    assert image_files(f"{tmp_path}/") == image_files(str(tmp_path))
    (tmp_path / "films" / "2020").mkdir(parents=True)
    (tmp_path / "films" / "2020" / "a.png").write_bytes(b"x")
    with pytest.raises(ConfigError) as error:
        image_files(f"{tmp_path / 'films'}/")
    assert str(error.value).endswith(f"directly in it; images='{tmp_path / 'films'}/**/*' takes its subfolders' files too")
    assert image_files(f"{tmp_path / 'films'}/**/*") == [str(tmp_path / "films" / "2020" / "a.png")]


def test_predict_on_a_folder_predicts_its_readable_images(untrained_checkpoint, tmp_path):
    from conftest import composed
    from covid_tl.tasks.predict import predict

    scans = tmp_path / "scans"
    for i in (2, 0, 1):
        image(scans / f"film{i}.png", seed=i)
    (scans / "broken.png").write_bytes(b"not a png")
    (scans / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    table = predict(composed("predict", f"ckpt_path={untrained_checkpoint}", f"images={scans}", "num_workers=0"), out)
    assert [p.split("/")[-1] for p in table["path"]] == ["film0.png", "film1.png", "film2.png"]
    assert pd.read_csv(out / "bad_rows.csv")["path"].map(lambda p: p.split("/")[-1]).tolist() == ["broken.png"]
