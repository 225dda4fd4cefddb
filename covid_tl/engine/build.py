"""Config -> objects: the DataModule, preprocessing and its cache, the Trainer with its callbacks
and loggers, the device.

Every task builds what it needs through here, so a config key reaches its code the same way
in training, evaluation, explanation and previews.
"""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.findings import FindingsDataModule
from covid_tl.data.segmentation import LungMaskDataModule
from covid_tl.core.errors import ConfigError
from covid_tl.models.segmenter import LungSegmenter
from covid_tl.preprocess.cache import PreprocessCache
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.preprocess.pipeline import Preprocess
from covid_tl.preprocess.schema import register as register_configs
from covid_tl.runtime.run_checks import instantiate_checked
from covid_tl.runtime.tracking import log_config, quiet_lightning

register_configs()  # structured configs, before anything composes one


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a name -> config mapping (callbacks, loggers); null entries
    are left out."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


def build_trainer(cfg: DictConfig) -> pl.Trainer:
    """The Trainer of `cfg.trainer` with the callbacks and loggers their groups name; the
    loggers start with the run config."""
    quiet_lightning()
    trainer = instantiate(cfg.trainer, callbacks=instantiate_all(cfg.get("callbacks")),
                          logger=instantiate_all(cfg.get("logger")) or False)
    log_config(trainer.loggers, cfg)
    return trainer


#: Keys of a data config that only feed interpolations (`data=manifest data.path=...`,
#: `data=synthetic_shift data.phantoms.image_size=...`).
DATA_ANCHORS = ("path", "root", "phantoms")


def build_datamodule(cfg: DictConfig, input_spec: InputSpec) -> XrayDataModule:
    """The DataModule of `cfg.data` (its `_target_`), given what the other groups decide: the
    backbone's input spec, the preprocessing and its cache, the augmentation."""
    if issubclass(get_class(cfg.data._target_), FindingsDataModule):
        raise ConfigError("this data config holds ChestX-ray14's 14 findings: it is for task=pretrain (data=nih14)")
    if issubclass(get_class(cfg.data._target_), LungMaskDataModule):
        raise ConfigError("this data config holds lung masks: it is for the segmenter (python train.py --config-name segment)")
    data = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k not in DATA_ANCHORS}
    data["sources"] = {name: source for name, source in data["sources"].items() if source is not None}
    watermark = OmegaConf.to_container(cfg.watermark, resolve=True) if "watermark" in cfg else None
    preprocess, cache = build_preprocessing(cfg)
    augmentation = instantiate_checked(cfg.augment, _convert_="all")  # a bad augment key: its one line
    # Objects go in through the partial: passed to instantiate, a dataclass would become a config.
    datamodule = instantiate(data, _partial_=True, _convert_="all")
    return datamodule(input_spec=input_spec, preprocess=preprocess, augmentation=augmentation,
                      watermark=watermark, cache=cache)


def build_preprocessing(cfg: DictConfig) -> tuple[Preprocess, PreprocessCache | None]:
    """The deterministic preprocessing of `cfg.preprocessing` and its disk cache (if on). With
    `lungs`, the segmenter its `model` names goes in, and its digest into the cache key."""
    options = OmegaConf.to_container(cfg.preprocessing, resolve=True)
    cache_dir, use_cache, target = options.pop("cache_dir"), options.pop("cache"), options.pop("_target_")
    extra, key = {}, dict(options)
    if options.get("lungs") is not None:
        extra["segment"] = LungSegmenter.load(options["lungs"].pop("model", None))
        key = {**options, "segmenter": extra["segment"].digest}
    preprocess = instantiate({"_target_": target, **options}, **extra, _convert_="all")
    return preprocess, PreprocessCache(cache_dir, key) if use_cache else None



def pick_device(device: str = "auto") -> torch.device:
    """`auto` (and Lightning's `gpu`) mean CUDA when there is one."""
    if device in ("auto", "gpu"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
