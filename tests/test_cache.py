import multiprocessing

import cv2
import numpy as np

from covid_tl.data.dataset import PreparedImages
from covid_tl.preprocess.cache import PreprocessCache
from covid_tl.preprocess.pipeline import Prepared, identity


def invert(image):
    invert.calls += 1
    return identity(255 - image)


invert.calls = 0


def write_image(path, value=10):
    assert cv2.imwrite(str(path), np.full((8, 8), value, np.uint8))
    return str(path)


def test_prepared_images_are_computed_once_then_read_from_disk(tmp_path):
    path = write_image(tmp_path / "a.png")
    cache = PreprocessCache(tmp_path / "cache", {"step": "invert"})
    prepared = PreparedImages(lambda row: cv2.imread(row["path"], 0), invert, cache, lambda row: True)
    invert.calls = 0
    first = prepared({"path": path})
    second = PreparedImages(lambda row: cv2.imread(row["path"], 0), invert, PreprocessCache(tmp_path / "cache", {"step": "invert"}), lambda row: True)({"path": path})
    assert invert.calls == 1 and np.array_equal(first.image, second.image) and first.image[0, 0] == 245
    assert first.box == second.box == (0, 0, 8, 8)


def test_changed_file_or_config_never_reads_a_stale_entry(tmp_path):
    path = write_image(tmp_path / "a.png", 10)
    load = lambda row: cv2.imread(row["path"], 0)  # noqa: E731
    PreparedImages(load, invert, PreprocessCache(tmp_path, {"v": 1}), lambda row: True)({"path": path})
    other_config = PreparedImages(load, lambda im: identity(im + 1), PreprocessCache(tmp_path, {"v": 2}), lambda row: True)
    assert other_config({"path": path}).image[0, 0] == 11
    write_image(tmp_path / "a.png", 20)
    fresh = PreparedImages(load, invert, PreprocessCache(tmp_path, {"v": 1}), lambda row: True)({"path": path})
    assert fresh.image[0, 0] == 235


def _put_many(args):
    directory, worker = args
    cache = PreprocessCache(directory, {"shared": True})
    for _ in range(20):
        cache.put("ab" * 32, Prepared(np.full((64, 64), 7, np.uint8), (1, 2, 65, 66)))
        got = cache.get("ab" * 32)
        assert got is None or (got.image.shape == (64, 64) and (got.image == 7).all() and got.box == (1, 2, 65, 66))
    return worker


def test_concurrent_writers_leave_whole_entries_and_no_temporary_files(tmp_path):
    with multiprocessing.get_context("fork").Pool(3) as pool:
        assert sorted(pool.map(_put_many, [(tmp_path, w) for w in range(3)])) == [0, 1, 2]
    cache = PreprocessCache(tmp_path, {"shared": True})
    assert (cache.get("ab" * 32).image == 7).all()
    assert not list(tmp_path.rglob("*.tmp"))


def test_generated_rows_and_identity_preprocessing_skip_the_cache(tmp_path):
    cache = PreprocessCache(tmp_path, {})
    prepared = PreparedImages(lambda row: np.zeros((4, 4), np.uint8), invert, cache, lambda row: False)
    prepared({"path": "synthetic/00001"})
    assert not list(tmp_path.rglob("*.npz"))


def test_an_entry_of_another_image_in_its_place_is_rebuilt_not_used(tmp_path):
    a, b = write_image(tmp_path / "a.png", 10), write_image(tmp_path / "b.png", 20)
    cache = PreprocessCache(tmp_path / "cache", {"step": "invert"})
    prepared = PreparedImages(lambda row: cv2.imread(row["path"], 0), invert, cache, lambda row: True)
    for path in (a, b):
        prepared({"path": path})
    key_a, key_b = cache.file_key(a), cache.file_key(b)
    cache._path(key_b).write_bytes(cache._path(key_a).read_bytes())  # a valid entry, of the wrong image
    assert cache.get(key_b) is None
    assert prepared({"path": b}).image[0, 0] == 255 - 20
    assert cache.get(key_b).image[0, 0] == 235 and cache.get(key_a).image[0, 0] == 245


def test_model_input_is_cached_small_even_without_preprocessing(tmp_path):
    path = str(tmp_path / "film.png")
    film = np.zeros((64, 64), np.uint8)
    film[:, 32:] = 200  # left half 0, right half 200: each 4x4 block of the 8 px input is one value
    assert cv2.imwrite(path, film)
    loads = []

    def load(row):
        loads.append(row["path"])
        return cv2.imread(row["path"], 0)

    cache = PreprocessCache(tmp_path / "cache", {"steps": []})
    first = PreparedImages(load, identity, cache, lambda row: True).model_input({"path": path}, 8)
    again = PreparedImages(load, identity, PreprocessCache(tmp_path / "cache", {"steps": []}), lambda row: True)
    second = again.model_input({"path": path}, 8)
    assert len(loads) == 1  # the second read is the 8x8 entry, not the 64 px film
    assert first.shape == (8, 8) and np.array_equal(first, second)
    assert (first[:, :4] == 0).all() and (first[:, 4:] == 200).all()
    (entry,) = (tmp_path / "cache").rglob("*.npz")
    assert entry.stat().st_size < 2000  # 64 bytes of image, not the film's 4096
    assert again.model_input({"path": path}, 16).shape == (16, 16) and len(loads) == 2  # per size


def test_an_atomic_write_gets_the_mode_a_plain_open_gives(tmp_path):
    from covid_tl.core.files import write_atomically

    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    write_atomically(tmp_path / "atomic.json", lambda stream: stream.write(b"{}"))
    assert (tmp_path / "atomic.json").stat().st_mode == plain.stat().st_mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.json", "plain.json"]  # no temporary left
