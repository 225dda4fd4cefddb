"""task=pretrain: a 14-finding multi-label model on NIH ChestX-ray14, whose checkpoint then
serves as `backbone.weights=<path>` in transfer runs (the study's NIH-pretrained model)."""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from covid_tl.engine.build import build_trainer
from covid_tl.data.findings import FindingsDataModule
from covid_tl.core.labels import NIH_FINDINGS
from covid_tl.core.errors import ConfigError
from covid_tl.models.classifier import build_classifier
from covid_tl.models.findings import FindingsModule
from covid_tl.core.provenance import provenance
from covid_tl.reporting.results import Results, write_results


def pretrain(cfg: DictConfig, run_dir: Path) -> Results:
    """Train on ChestX-ray14's findings; returns (and writes) results.json."""
    # The class is checked before anything is built: another data config may not even resolve here.
    target = cfg.data.get("_target_")
    if target is None or not issubclass(get_class(target), FindingsDataModule):
        raise ConfigError("task=pretrain needs findings data: data=nih14 (data.root=<ChestX-ray14 dir>)")
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    net = build_classifier(cfg.backbone)
    net.head = nn.Linear(net.head[0].in_features, len(NIH_FINDINGS))
    # Objects go in through the partial: passed to instantiate, a dataclass would become a config.
    datamodule: FindingsDataModule = instantiate(cfg.data, _partial_=True, _convert_="all")(input_spec=net.input_spec)
    datamodule.setup("fit")
    datamodule.write_splits(run_dir / "splits.csv")
    module = FindingsModule(net, instantiate(cfg.optimizer), config=OmegaConf.to_container(cfg, resolve=True))
    trainer = build_trainer(cfg)  # conf/task/pretrain.yaml: callbacks without Grad-CAM
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=not cfg.trust_checkpoint)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    metrics = trainer.validate(module, datamodule=datamodule, ckpt_path=best or None, verbose=False,
                               weights_only=True)[0]
    val = {"auroc": metrics.get("val/auroc"),
           "auroc_per_finding": {f: metrics.get(f"val/auroc/{f}") for f in NIH_FINDINGS}}
    results = Results(sets={"val": val}, kind="findings", run={
        "backbone_checkpoint": best or None, "images": datamodule.sizes(), "seed": cfg.seed, **provenance()})
    write_results(run_dir, results)
    defined = sum(v is not None for v in val["auroc_per_finding"].values())
    mean = val["auroc"]
    print(f"mean validation AUROC over {defined} of 14 findings (those with both classes in validation): "
          + (f"{mean:.3f}" if mean is not None else "-"))
    print(f"transfer with: python train.py backbone={cfg.backbone.name} backbone.weights={best}")
    return results
