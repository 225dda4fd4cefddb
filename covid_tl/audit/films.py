"""The films an audit works on, as the model sees them: each set's preprocessed images with
their lung fields on the same grid, and the model's probabilities and features of any
(intervened) version of them.

Lung fields come from one place for every film of a set: the data's own masks when every film
has one (phantoms), else the lung segmenter on every film (xray-mini: drawn masks exist for
the COVID-19 films only). Mixing the two would make the shape of what is taken away differ by
class, a shortcut the audit itself planted.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from covid_tl.cam.lungs import CamLungs, image_key
from covid_tl.cam.images import same_aspect
from covid_tl.cam.scores import on_grid
from covid_tl.core.errors import ConfigError
from covid_tl.audit.options import MASKS, AuditOptions
from covid_tl.data.manifest import Manifest
from covid_tl.engine.evaluation import outputs, predict
from covid_tl.preprocess.interventions import only_region, without_region
from covid_tl.preprocess.model_input import InputSpec, normalize, resize_square

MaskLoader = Callable[[Mapping[str, Any]], "np.ndarray | None"]
#: The two lung interventions by the name of their test (covid_tl.preprocess.interventions).
REGIONS = {"lungs removed": without_region, "lungs only": only_region}


@dataclass
class AuditSet:
    """A named set of labelled films: its manifest, the run's PreparedImages (preprocessing as
    the checkpoint's) and the data's lung masks (None where a film has none)."""

    name: str
    manifest: Manifest
    prepared: Any  # covid_tl.data.dataset.PreparedImages: prepared(row) -> Prepared, .load_image(row)
    given_masks: MaskLoader


@dataclass
class Film:
    """One film as the model sees it before resizing: its prepared image, lung fields on that
    grid (None: unknown) and manifest row."""

    row: dict[str, Any]
    target: int
    image: np.ndarray
    lungs: np.ndarray | None


@dataclass
class Films:
    """A set's films and where their lung fields came from (given | segmenter | none)."""

    name: str
    films: list[Film]
    lung_source: str
    lung_field: bool = False  # the films went through preprocessing's lung field (crop and standardising from the lungs)

    @property
    def targets(self) -> np.ndarray:
        return np.array([f.target for f in self.films], np.int64)

    @property
    def patients(self) -> np.ndarray:
        return np.array([str(f.row["patient_id"]) for f in self.films])

    def column(self, name: str) -> np.ndarray:
        return np.array([str(f.row.get(name) or "") for f in self.films])


def audit_sets(sets: Mapping[str, tuple[Manifest, Any]], masks: MaskLoader) -> list[AuditSet]:
    """Named (manifest, XrayDataset) sets as the audit takes them, each with the preprocessing
    its dataset reads films through (the checkpoint's data, or an external set's files)."""
    return [AuditSet(name, manifest, dataset.prepare, masks) for name, (manifest, dataset) in sets.items()]


def intervened(film: Film, name: str, options: AuditOptions) -> np.ndarray:
    """The film as the model sees it under the lung intervention `name` (REGIONS)."""
    return REGIONS[name](film.image, film.lungs, options.fill, options.grow, options.blur)


def p_column(name: str) -> str:
    """audit_films.csv's column of each film's p(COVID-19) under the test `name`."""
    return f"p_{name.replace(' ', '_')}"


def _given_on_grid(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    """A data mask on the film's grid (one made at another size resized; one of another aspect,
    or an empty one, is no mask)."""
    if mask is None or not np.asarray(mask).any() or not same_aspect(mask.shape, shape):
        return None
    return on_grid(np.asarray(mask, bool), shape)


def load_films(audit_set: AuditSet, masks: str, segmenter: CamLungs) -> Films:
    """Every film of the set, preprocessed, with its lung fields (see the module docstring)."""
    if masks not in MASKS:
        raise ConfigError(f"unknown shortcuts.masks {masks!r}; valid: {', '.join(MASKS)}")
    rows = audit_set.manifest.frame.to_dict("records")
    originals, given = [], []
    for row in rows:
        film = audit_set.prepared.load_image(row)
        originals.append(film)
        given.append(_given_on_grid(audit_set.given_masks(row), film.shape) if masks != "segmenter" else None)
    use_given = masks == "given" or (masks == "auto" and all(g is not None for g in given))
    source = "given" if use_given else "segmenter"
    if masks == "given" and any(g is None for g in given):
        source = "none"
    films = []
    for row, original, mask in zip(rows, originals, given):
        prepared = audit_set.prepared(row)
        if source == "segmenter":
            mask = segmenter.segment(image_key(row), original)
        lungs = None
        if source != "none":
            y0, x0, y1, x1 = prepared.box
            lungs = on_grid(mask[y0:y1, x0:x1], prepared.image.shape)
        films.append(Film(row, int(row["label"] == "covid"), prepared.image, lungs))
    return Films(audit_set.name, films, source, getattr(audit_set.prepared.preprocess, "lungs", None) is not None)


def model_inputs(images: Sequence[np.ndarray], spec: InputSpec) -> torch.Tensor:
    """uint8 films -> the normalised (N, C, size, size) batch the model takes."""
    return torch.stack([torch.from_numpy(np.ascontiguousarray(normalize(resize_square(image, spec.size), spec)))
                        for image in images])


def _inputs(images: Sequence[np.ndarray], spec: InputSpec) -> TensorDataset:
    """The films as the (input, target) items engine.evaluation runs a model on (targets unused)."""
    return TensorDataset(model_inputs(images, spec), torch.zeros(len(images)))


def probabilities(net: torch.nn.Module, images: Sequence[np.ndarray], device: torch.device,
                  batch_size: int = 32) -> np.ndarray:
    """p(COVID-19) of each film, as engine.evaluation.predict gives every covid-tl probability."""
    if not len(images):
        return np.zeros(0)
    return predict(net, _inputs(images, net.input_spec), device, batch_size).astype(np.float64)


def features(net: torch.nn.Module, images: Sequence[np.ndarray], device: torch.device,
             batch_size: int = 32) -> np.ndarray:
    """The backbone's pooled features of each film (what the head reads), (N, D)."""
    return outputs(net.features, _inputs(images, net.input_spec), device, batch_size).astype(np.float64)
