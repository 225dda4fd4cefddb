"""Structured configs: dataclasses of the preprocessing code registered with Hydra's ConfigStore,
so that YAML names them (`defaults: - detector@inpaint.detector: default`) instead of copying
their fields. Registered on import; everything that composes a config imports this first.
"""
from __future__ import annotations

from hydra.core.config_store import ConfigStore

from covid_tl.preprocess.detector_params import DetectorParams
from covid_tl.preprocess.lungs import LungParams


def register() -> None:
    """`preprocessing/detector/default`: the mark detector's settings, typed and defaulted by
    DetectorParams; `preprocessing/lung_field/default`: the lung field's, by LungParams (an
    unknown key or a value of the wrong type is refused at composition)."""
    ConfigStore.instance().store(group="preprocessing/detector", name="default", node=DetectorParams)
    ConfigStore.instance().store(group="preprocessing/lung_field", name="default", node=LungParams)


register()
