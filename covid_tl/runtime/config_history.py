"""Run configs as older covid-tl wrote them, brought to today's shape.

A checkpoint keeps the run config it was trained with, `_target_` paths and all; when code
moves or a config block changes shape, old checkpoints must keep loading. Every move and
reshape is recorded here, once: MOVED_MODULES and MOVED_TARGETS map an old `_target_` to its
new path, and
`upgrade` rewrites an old config (a plain dict, before any check or Hydra sees it). The
checkpoint in tests/data, written before the moves of issue #20, keeps this honest.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Modules that moved, old dotted path -> new (#20: the package root by layer, twin names
#: renamed). A `_target_` inside one of them moves with it.
MOVED_MODULES: dict[str, str] = {
    "covid_tl.errors": "covid_tl.core.errors",
    "covid_tl.files": "covid_tl.core.files",
    "covid_tl.labels": "covid_tl.core.labels",
    "covid_tl.formatting": "covid_tl.core.formatting",
    "covid_tl.provenance": "covid_tl.core.provenance",
    "covid_tl.metrics": "covid_tl.stats.metrics",
    "covid_tl.calibration": "covid_tl.stats.calibration",
    "covid_tl.operating_point": "covid_tl.stats.operating_point",
    "covid_tl.results": "covid_tl.reporting.results",
    "covid_tl.console": "covid_tl.reporting.console",
    "covid_tl.plots": "covid_tl.reporting.plots",
    "covid_tl.page": "covid_tl.reporting.page",
    "covid_tl.grid": "covid_tl.reporting.grid",
    "covid_tl.config_check": "covid_tl.runtime.config_check",
    "covid_tl.config_history": "covid_tl.runtime.config_history",
    "covid_tl.run_checks": "covid_tl.runtime.run_checks",
    "covid_tl.torch_files": "covid_tl.runtime.torch_files",
    "covid_tl.run_guard": "covid_tl.runtime.run_guard",
    "covid_tl.run_dir": "covid_tl.runtime.csv_logger",
    "covid_tl.tracking": "covid_tl.runtime.tracking",
    "covid_tl.build": "covid_tl.engine.build",
    "covid_tl.evaluation": "covid_tl.engine.evaluation",
    "covid_tl.model_card": "covid_tl.engine.model_card",
    "covid_tl.preprocess.preview": "covid_tl.preprocess.panels",
    "covid_tl.data.synthetic.preview": "covid_tl.data.synthetic.gallery",
    "covid_tl.models.segmentation": "covid_tl.models.segmenter_module",
    "covid_tl.models.segmenter_eval": "covid_tl.models.segmenter_scores",
    "covid_tl.data.lung_masks": "covid_tl.data.segmentation",
}
AUGMENT = "covid_tl.preprocess.augment."
#: Old `_target_` -> where that class or function lives now.
MOVED_TARGETS: dict[str, str] = {
    AUGMENT + "build_acquisition_augmentation": AUGMENT + "build_augmentation",  # #20: one augmentation schema
    AUGMENT + "imaging_chain_augmentation": AUGMENT + "build_augmentation",
}
#: AcquisitionChain's keys before #20 -> the step (covid_tl.preprocess.steps) each is now.
CHAIN_KEYS = {"resolution": "downscale", "jpeg_quality": "jpeg"}
CHAIN = "covid_tl.preprocess.acquisition.AcquisitionChain"


def upgrade(config: Any) -> Any:
    """`config` (a run config as a checkpoint stores it) with every moved `_target_` renamed
    and every old block shape rewritten; a new object, the argument is left as it is."""
    if isinstance(config, Mapping) and isinstance(config.get("augment"), Mapping):
        config = {**config, **_augment_steps(config)}
    return _renamed(config)


def _augment_steps(config: Mapping[str, Any]) -> dict[str, Any]:
    """augment (and watermark) as #20 shapes them: the watermark block out of augment into a
    group of its own; each of the three old augment shapes as steps {p, range}, blur's pixels
    (at the model's input size) as a fraction of the shorter side."""
    augment = dict(config["augment"])
    moved = {"watermark": augment.pop("watermark")} if "watermark" in augment else {}
    target = str(augment.get("_target_", ""))
    size = float((config.get("backbone") or config.get("segmenter") or {}).get("input_size") or 224)
    if target == AUGMENT + "imaging_chain_augmentation":
        augment = _imaging_chain_steps(augment, size)
    elif target == AUGMENT + "build_acquisition_augmentation" and augment.get("blur"):
        augment["blur"] = {**augment["blur"], "range": [v / size for v in augment["blur"]["range"]]}
    elif target == AUGMENT + "build_augmentation" and any(isinstance(v, (int, float)) for v in augment.values()):
        old = {"rotate": 0.0, "shear": 0.0, "zoom": 0.0, "brightness_contrast": 0.0} | augment
        steps = {"rotate": _around(0, old["rotate"]), "shear": _around(0, old["shear"]), "scale": _around(1, old["zoom"]),
                 "brightness": _around(0, old["brightness_contrast"]), "contrast": _around(1, old["brightness_contrast"])}
        augment = {"_target_": target, **{k: v for k, v in steps.items() if v["p"]}, "border": "reflect"}
    return {"augment": augment, **moved}


def _around(centre: float, amount: float, p: float = 1.0) -> dict[str, Any]:
    """An old `amount either way` as a step: range centre +- amount, off (p 0) when 0."""
    return {"p": p if amount else 0.0, "range": [centre - amount, centre + amount]}


def _imaging_chain_steps(old: Mapping[str, Any], size: float) -> dict[str, Any]:
    """imaging_chain_augmentation's keys (its defaults where absent) as steps."""
    old = {"rotate": 10.0, "scale": [0.85, 1.3], "translate": 0.06, "gamma": [0.6, 1.7], "brightness_contrast": 0.3,
           "blur_sigma": [0.5, 2.0], "jpeg_quality": [20, 90], "downscale": [0.3, 0.8], "noise_std": [0.01, 0.05],
           "p": 0.5, "border": "constant"} | dict(old)
    p = old["p"]
    return {"_target_": old["_target_"], "rotate": _around(0, old["rotate"]), "scale": {"p": 1.0, "range": old["scale"]},
            "translate": _around(0, old["translate"]), "gamma": {"p": p, "range": old["gamma"]},
            "brightness": _around(0, old["brightness_contrast"], p), "contrast": _around(1, old["brightness_contrast"], p),
            "downscale": {"p": p, "range": old["downscale"]}, "blur": {"p": p, "range": [v / size for v in old["blur_sigma"]]},
            "noise": {"p": p, "range": old["noise_std"]}, "jpeg": {"p": p, "range": old["jpeg_quality"]},
            "border": old["border"]}


def current_target(target: Any) -> Any:
    """Where the `_target_` value `target` lives now (itself, unless it or its module moved)."""
    if not isinstance(target, str):
        return target
    target = MOVED_TARGETS.get(target, target)
    module = next((old for old in MOVED_MODULES if target.startswith(old + ".")), None)
    return MOVED_MODULES[module] + target[len(module):] if module else target


def _renamed(node: Any) -> Any:
    if isinstance(node, Mapping):
        keys = CHAIN_KEYS if node.get("_target_") == CHAIN else {}
        return {keys.get(key, key): current_target(value) if key == "_target_" else _renamed(value)
                for key, value in node.items()}
    if isinstance(node, list):
        return [_renamed(value) for value in node]
    return node
