"""The data source of seeded phantoms: manifest facts without rendering, images on demand."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import AfterValidator, BeforeValidator, Field, validate_call

from covid_tl.core.labels import LABELS
from covid_tl.data.manifest import Manifest
from covid_tl.data.synthetic import streams
from covid_tl.data.synthetic.anatomy import patient_model
from covid_tl.data.synthetic.marks import Mark, ShortcutSpec, burn_marks
from covid_tl.data.synthetic.render import render_phantom
from covid_tl.preprocess.acquisition import AcquisitionChain, acquire

SOURCE = "synthetic"
VIEW = "PA"


@dataclass(frozen=True)
class Phantom:
    """One rendered image with its ground truth (lungs, marks, opacities)."""

    image: np.ndarray  # uint8 (H, W)
    lung_mask: np.ndarray  # bool (H, W): the lung fields
    mark_mask: np.ndarray  # bool (H, W): union of mark pixels (all False when unmarked)
    opacity_mask: np.ndarray  # bool (H, W): where the ground-glass opacity is noticeable
    marks: tuple[Mark, ...]
    label: str  # "covid" or "no_finding"


def _ordered(pair: tuple) -> tuple:
    if pair[0] > pair[1]:
        raise ValueError(f"must be ordered [low, high], got {list(pair)}")
    return pair


def _plain(value: object) -> object:
    """An omegaconf DictConfig (or a config node not yet instantiated) as a dict of arguments."""
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items() if str(k) != "_target_"}
    return value


Count = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class SyntheticSource:
    """A data source of seeded phantoms: same arguments, same manifest, same images.

    `name` is the rows' source (and the prefix of their paths and patient ids), so several
    sources, e.g. simulated hospitals each with its own imaging `chain`, combine into one
    manifest and every breakdown by source tells them apart.
    """

    reads_files = False  # rows name generator indices, not files

    @validate_call
    def __init__(self, n_patients: Annotated[int, Field(ge=2)] = 200,
                 images_per_patient: Annotated[tuple[Count, Count], AfterValidator(_ordered)] = (1, 3),
                 covid_fraction: Fraction = 0.5, image_size: Annotated[int, Field(ge=16)] = 128,
                 size_jitter: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.15,
                 opacity: Annotated[tuple[Fraction, Fraction], AfterValidator(_ordered)] = (0.4, 1.0),
                 noise: Annotated[float, Field(ge=0.0, le=0.5)] = 0.03,
                 shortcut: Annotated[ShortcutSpec | None, BeforeValidator(_plain)] = None,
                 seed: Annotated[int, Field(ge=0)] = 0, name: Annotated[str, Field(pattern=r"^[\w.-]+$")] = SOURCE,
                 chain: Annotated[AcquisitionChain | None, BeforeValidator(_plain)] = None) -> None:
        """opacity: the strength range of COVID-19 opacities (0 invisible, 1 strong); chain:
        the imaging chain applied to every image after its marks (None: as rendered)."""
        self.n_patients = n_patients
        self.images_per_patient = images_per_patient
        self.covid_fraction = covid_fraction
        self.image_size = image_size
        self.size_jitter = size_jitter
        self.opacity = opacity
        self.noise = noise
        self.shortcut = ShortcutSpec() if shortcut is None else shortcut
        self.seed = seed
        self.name = name
        self.chain = chain

        # manifest-level facts, cheap and without rendering
        n_covid = round(covid_fraction * n_patients)
        order = streams.rng(seed, streams.LABELS).permutation(n_patients)
        covid = np.zeros(n_patients, bool)
        covid[order[:n_covid]] = True
        lo, hi = images_per_patient
        counts = streams.rng(seed, streams.COUNTS).integers(lo, hi + 1, size=n_patients)
        self._patient = np.repeat(np.arange(n_patients), counts)
        starts = np.cumsum(counts) - counts
        self._image_no = np.arange(len(self._patient)) - np.repeat(starts, counts)
        self._covid = covid[self._patient]
        # one uniform per image: raising a probability only adds marks, never moves them
        draw = streams.rng(seed, streams.MARKED).random(len(self._patient))
        p = np.where(self._covid, self.shortcut.p_covid, self.shortcut.p_no_finding)
        self._marked = draw < p

    def __len__(self) -> int:
        return len(self._patient)

    def __repr__(self) -> str:
        return (f"SyntheticSource(name={self.name!r}, n_patients={self.n_patients}, images={len(self)}, "
                f"covid_fraction={self.covid_fraction}, image_size={self.image_size}, seed={self.seed}, "
                f"shortcut={self.shortcut}, chain={self.chain})")

    def _check(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {index!r}")
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} synthetic images")
        return int(index)

    def manifest(self) -> Manifest:
        n = len(self)
        pw = max(4, len(str(self.n_patients - 1)))
        iw = max(5, len(str(n - 1)))
        frame = pd.DataFrame({
            "path": [f"{self.name}/{i:0{iw}d}" for i in range(n)],
            "label": np.where(self._covid, LABELS[1], LABELS[0]),
            "patient_id": [f"{self.name}:{p:0{pw}d}" for p in self._patient],
            "source": self.name,
            "view": VIEW,
            "index": np.arange(n, dtype=np.int64),
            "marked": self._marked.copy(),
        })
        return Manifest(frame)

    def frame(self) -> pd.DataFrame:
        """The manifest's table: what the DataModule combines with other sources."""
        return self.manifest().frame

    def render(self, index: int, with_marks: bool = True) -> Phantom:
        """The phantom for one index; with_marks=False is the same image before marks are burned in.

        Unmarked renders report no marks and an empty mark_mask. The chain (its text included)
        comes last, on every image: it is how the source stores films, not a mark of the class.
        """
        i = self._check(index)
        patient, image_no = int(self._patient[i]), int(self._image_no[i])
        covid = bool(self._covid[i])
        image, lung_mask, opacity_mask = render_phantom(
            patient_model(self.seed, patient), streams.rng(self.seed, streams.IMAGE, patient, image_no), covid,
            self.image_size, self.size_jitter, self.opacity, self.noise)
        marks: tuple[Mark, ...] = ()
        mark_mask = np.zeros_like(lung_mask)
        if with_marks and self._marked[i]:
            rng = streams.rng(self.seed, streams.MARKS, patient, image_no)
            image, mark_mask, marks = burn_marks(image, rng, self.shortcut)
        if self.chain is not None:
            image = acquire(image, self.chain, streams.rng(self.seed, streams.CHAIN, patient, image_no))
        return Phantom(image, lung_mask, mark_mask, opacity_mask, marks, LABELS[int(covid)])

    def load_image(self, row: Mapping) -> np.ndarray:
        """The image for a manifest row (by its generator index): what the Dataset reads."""
        return self.render(int(row["index"])).image

    def load_lung_mask(self, row: Mapping) -> np.ndarray:
        """The phantom's lung fields, for CAM scores."""
        return self.render(int(row["index"])).lung_mask
