"""A torch Dataset over a Manifest: load, preprocess (cached), resize, augment, normalise."""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from covid_tl.data.images import ImageReadError, read_xray
from covid_tl.data.manifest import Manifest
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.preprocess.cache import PreprocessCache
from covid_tl.preprocess.model_input import normalize, resize_square
from covid_tl.core.errors import ConfigError
from covid_tl.core.labels import LABELS
from covid_tl.preprocess.pipeline import Prepared, Preprocess, identity
from covid_tl.preprocess.watermark import POSITIONS, Stamp, paste_stamps

log = logging.getLogger(__name__)

ImageLoader = Callable[[Mapping[str, Any]], np.ndarray]


class PreparedImages:
    """Loaded and deterministically preprocessed images; cached on disk when a cache is given
    and the row names a file (generated images are cheaper to make than to look up).

    Two kinds of entry: the preprocessed image at its own size (what marks, crops and lung
    masks are read against; only when there is preprocessing), and the model input, that image
    resized to the backbone's size (with or without preprocessing: a warm epoch then reads a
    small file instead of decoding a 1024 px film).

    Entries are named by the file's content at its first read (setup): a file removed or
    changed after it is served from its entries, and never decoded in its new state (which
    setup did not check); with no entry it raises ImageReadError (XrayDataset then skips it)."""

    def __init__(
        self,
        load_image: ImageLoader,
        preprocess: Preprocess = identity,
        cache: PreprocessCache | None = None,
        reads_files: Callable[[Mapping[str, Any]], bool] = lambda row: False,
    ) -> None:
        self.load_image = load_image
        self.preprocess = preprocess
        self.cache = cache if preprocess is not identity else None
        self.input_cache = cache
        self._input_caches: dict[int, PreprocessCache] = {}
        self._keys: dict[str, str] = {}  # path -> content hash at its first read
        self.reads_files = reads_files

    def check(self, row: Mapping[str, Any], size: int | None = None) -> None:
        """Decode the row's image as an epoch will, raising ImageReadError if it cannot be; with
        a cache, also preprocess and store it (and its model input at `size`), so the setup
        check is the only decode and the first epoch reads entries."""
        if self.input_cache is not None and size is not None and self.reads_files(row):
            self.model_input(row, size)
        elif self.cache is None or not self.reads_files(row):
            self.load_image(row)
        else:
            self(row)

    def __call__(self, row: Mapping[str, Any]) -> Prepared:
        if self.input_cache is None or not self.reads_files(row):
            return self.preprocess(self.load_image(row))
        key = self.file_key(row)
        prepared = self.cache.get(key) if self.cache is not None else None
        if prepared is None:
            prepared = self.preprocess(self._load(row, key))
            if self.cache is not None:
                self.cache.put(key, prepared)
        return prepared

    def model_input(self, row: Mapping[str, Any], size: int) -> np.ndarray:
        """The prepared image resized to (size, size) uint8, from the cache when it has it."""
        if self.input_cache is None or not self.reads_files(row):
            return resize_square(self(row).image, size)
        if size not in self._input_caches:
            self._input_caches[size] = PreprocessCache(self.input_cache.directory, {"model_input_size": size})
        cache = self._input_caches[size]
        key = self.file_key(row)
        entry = cache.get(key)
        if entry is None:
            prepared = self(row)
            entry = Prepared(resize_square(prepared.image, size), prepared.box)
            cache.put(key, entry)
        return entry.image

    def file_key(self, row: Mapping[str, Any]) -> str:
        """The content hash of the row's file when this run first read it (setup's check): what
        names its cache entries for the rest of the run, so a file removed or changed since
        is still served from them."""
        path = str(row["path"])
        if path not in self._keys:
            try:
                self._keys[path] = self.input_cache.file_key(path)
            except OSError as error:
                raise ImageReadError(f"{path}: {error.strerror or error}") from None
        return self._keys[path]

    def _load(self, row: Mapping[str, Any], key: str) -> np.ndarray:
        """The row's image decoded, if its file still holds what setup checked (`key`)."""
        try:
            now = self.input_cache.file_key(row["path"])
        except OSError:
            raise ImageReadError(f"{row['path']}: removed since setup, and no cache entry of it") from None
        if now != key:
            raise ImageReadError(f"{row['path']}: changed since setup, and no cache entry of what it held")
        return self.load_image(row)


def read_path(row: Mapping[str, Any]) -> np.ndarray:
    """The image file a row names (module level, so DataLoader workers can take it along)."""
    return read_xray(row["path"])


def names_a_file(row: Mapping[str, Any]) -> bool:
    return True


def file_images(preprocess: Preprocess = identity, cache: PreprocessCache | None = None) -> PreparedImages:
    """PreparedImages of rows whose `path` is an image file (files given on the command line)."""
    return PreparedImages(read_path, preprocess, cache, names_a_file)


def worker_seed() -> int:
    """torch's seed in this process: differs per DataLoader worker and per epoch, and is fixed
    by the run's seed, so random image work is both varied and reproducible."""
    return torch.initial_seed() % 2**32


class SeededAugmentation:
    """An albumentations pipeline reseeded from the worker's seed (albumentations keeps its own
    RNG, so every DataLoader worker would otherwise replay the same augmentations)."""

    def __init__(self, compose: A.Compose) -> None:
        self.compose = compose
        self._seed: int | None = None

    def apply(self, **data: np.ndarray) -> dict[str, np.ndarray]:
        """The pipeline on named arrays (`image`, and a `mask` that moves with it)."""
        if worker_seed() != self._seed:
            self._seed = worker_seed()
            self.compose.set_random_seed(self._seed)
        return self.compose(**data)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.apply(image=image)["image"]


class WatermarkTransplant:
    """Pastes marks cut from COVID-19 training images onto a no-finding image with
    probability p, so that marks stop telling the classes apart (the study's Figure 11)."""

    def __init__(self, bank: Sequence[Stamp], p: float, n: Sequence[int] = (1, 2),
                 positions: Sequence[str] = POSITIONS) -> None:
        if not 0 <= p <= 1:
            raise ConfigError(f"watermark.p must be in [0, 1], got {p}")
        self.bank, self.p, self.n, self.positions = list(bank), p, tuple(n), tuple(positions)
        self._seed: int | None = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if worker_seed() != self._seed:
            self._seed = worker_seed()
            self.rng = np.random.default_rng(self._seed)
        if not self.bank or self.rng.random() >= self.p:
            return image
        return paste_stamps(image, self.bank, self.rng, n=self.n, positions=self.positions)[0]


class XrayDataset(Dataset):
    """(image tensor, target) pairs in manifest row order; target 1 is COVID-19."""

    def __init__(
        self,
        manifest: Manifest,
        prepare: Callable[[Mapping[str, Any]], Prepared],
        input_spec: InputSpec,
        augmentation: A.Compose | None = None,
        watermark: WatermarkTransplant | None = None,
    ) -> None:
        self.rows = manifest.frame.to_dict("records")
        self.targets = manifest.targets
        self.prepare = prepare
        self.input_spec = input_spec
        self.augment = SeededAugmentation(augmentation) if augmentation is not None else None
        self.watermark = watermark
        self.skipped: dict[int, str] = {}  # rows unreadable since setup (in this process), and why

    def __len__(self) -> int:
        return len(self.rows)

    def image(self, i: int) -> np.ndarray:
        """The uint8 image as the model sees it (before normalisation)."""
        if self.watermark is None and isinstance(self.prepare, PreparedImages):
            image = self.prepare.model_input(self.rows[i], self.input_spec.size)
        else:  # marks are pasted at the prepared image's own size, before resizing
            image = self.prepare(self.rows[i]).image
            if self.watermark is not None and self.targets[i] == 0:
                image = self.watermark(image)
            image = resize_square(image, self.input_spec.size)
        return self.augment(image) if self.augment is not None else image

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(normalize(self.readable_image(i), self.input_spec)))
        return x, torch.tensor(self.targets[i], dtype=torch.long)

    def readable_image(self, i: int) -> np.ndarray:
        """image(i); if row i's file can no longer be read (removed or changed after setup, with
        no cache entry), the row is skipped, one warning for it, and the next readable row of
        the same label serves in its place.

        A substitute rather than a dropped item: Lightning's steps, predictions kept in row
        order and the CAM callback all expect one item per row, in order, with its target; a
        dropped item would shift every later prediction onto the wrong row, and an empty batch
        would break a step. The substitute keeps the target true and the batch whole; its cost
        is one image seen twice in the epoch."""
        same = np.flatnonzero(self.targets == self.targets[i])
        for j in np.roll(same, -int(np.searchsorted(same, i))).tolist():
            if j in self.skipped:
                continue
            try:
                return self.image(j)
            except (ImageReadError, cv2.error) as error:
                self.skipped[j] = str(error)
                log.warning("skipping row %d, unreadable since setup (%s); the next readable %s image serves in its "
                            "place (%d row(s) skipped so far)", j, error, LABELS[self.targets[j]], len(self.skipped))
        raise ImageReadError(f"no {LABELS[self.targets[i]]} image of this set can be read any more "
                             f"({len(self.skipped)} row(s) unreadable since setup)")


class ImageFiles(Dataset):
    """(model input, picture shown) per row, as XrayDataset prepares them for evaluation, for
    files without labels (predict.py). The shown picture is the uint8 (size, size) image the
    input was normalised from, for overlays."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], prepare: Callable[[Mapping[str, Any]], Prepared],
                 input_spec: InputSpec) -> None:
        self.rows, self.prepare, self.input_spec = list(rows), prepare, input_spec

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        shown = resize_square(self.prepare(self.rows[i]).image, self.input_spec.size)
        return torch.from_numpy(np.ascontiguousarray(normalize(shown, self.input_spec))), torch.from_numpy(shown)
