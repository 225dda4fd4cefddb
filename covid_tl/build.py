"""Config -> objects: the DataModule, preprocessing and its cache, callbacks and loggers, the device.

Every task builds what it needs through here, so a config key reaches its code the same way
in training, evaluation, explanation and previews.
"""
from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from covid_tl.data.datamodule import XrayDataModule
from covid_tl.errors import ConfigError
from covid_tl.preprocess.augment import build_augmentation
from covid_tl.preprocess.cache import PreprocessCache
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.preprocess.pipeline import Preprocess, build_preprocess


def instantiate_all(group: DictConfig | None, skip: Collection[str] = ()) -> list[Any]:
    """Instantiate every entry of a name -> config mapping (callbacks, loggers); null and
    names in `skip` are left out."""
    return [instantiate(entry) for name, entry in (group or {}).items() if entry is not None and name not in skip]


#: Keys of a data config that only feed interpolations (`data=manifest data.path=...`).
DATA_ANCHORS = ("path", "root")


def build_datamodule(cfg: DictConfig, input_spec: InputSpec) -> XrayDataModule:
    """The DataModule of `cfg.data`: its `sources` instantiated, its other keys as arguments."""
    if "sources" not in cfg.data:
        raise ConfigError("this data config has no `sources`: it is for task=pretrain (data=nih14)")
    options = {k: v for k, v in cfg.data.items() if k not in ("sources", *DATA_ANCHORS)}
    sources = {name: instantiate(source) for name, source in cfg.data.sources.items() if source is not None}
    preprocess, cache = build_preprocessing(cfg)
    return XrayDataModule(
        sources,
        input_spec,
        preprocess=preprocess,
        augmentation=build_augmentation(**{k: v for k, v in cfg.augment.items() if k != "watermark"}),
        watermark=cfg.augment.get("watermark"),
        cache=cache,
        **OmegaConf.to_container(DictConfig(options), resolve=True),
    )


def build_preprocessing(cfg: DictConfig) -> tuple[Preprocess, PreprocessCache | None]:
    """The deterministic preprocessing of `cfg.preprocessing` and its disk cache (if on)."""
    steps = OmegaConf.to_container(cfg.preprocessing, resolve=True)
    cache_dir, use_cache = steps.pop("cache_dir"), steps.pop("cache")
    return build_preprocess(**steps), PreprocessCache(cache_dir, steps) if use_cache else None



def pick_device(device: str = "auto") -> torch.device:
    """`auto` (and Lightning's `gpu`) mean CUDA when there is one."""
    if device in ("auto", "gpu"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
