"""export.py: a checkpoint's network as ONNX or TorchScript, with what it takes to run it
without covid-tl written beside it (model.json).

The exported graph ends in a sigmoid: it maps a (batch, channels, size, size) float32 input,
prepared as model.json says, to the COVID-19 probability of each image, shape (batch,). The
file is checked against the checkpoint before the export is called done.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from covid_tl.core.errors import ConfigError
from covid_tl.core.labels import LABELS, POSITIVE
from covid_tl.engine.model_card import INTENDED_USE
from covid_tl.core.provenance import provenance
from covid_tl.models.checkpoint import load_run
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.runtime.run_checks import check_script_config

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # largest difference in probability allowed between the export and the checkpoint
INPUT, OUTPUT = "image", "prob_covid"


class ProbabilityOutput(nn.Module):
    """The classifier with its sigmoid: image batch (N, C, H, W) -> COVID-19 probabilities (N,)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(image))


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> dict[str, Any]:
    """torch.onnx's exporter (torch.export, no network needed), weights inside the one file,
    a dynamic batch axis."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    for name in ("onnx_ir", "onnxscript"):  # a line per graph pass at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        program = torch.onnx.export(model, (example,), path, input_names=[INPUT], output_names=[OUTPUT],
                                    dynamic_shapes={INPUT: {0: batch}}, external_data=False, dynamo=True, verbose=False)
    except Exception as error:  # the exporter raises many types for an unsupported operator
        raise ConfigError(f"ONNX export failed ({type(error).__name__}: {str(error).splitlines()[0]}); "
                          "format=torchscript may work") from None
    return {"opset": int(next(o.version for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx")))}


def run_onnx(path: Path, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT], {INPUT: inputs})[0]


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> dict[str, Any]:
    """torch.jit.trace (PyTorch deprecates TorchScript in favour of torch.export; it still
    loads in any libtorch, C++ included)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(model, example).save(str(path))
    return {}


def run_torchscript(path: Path, inputs: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode():
        return scripted(torch.from_numpy(inputs)).numpy()


#: format -> (file name, export, run with the format's own runtime)
FORMATS: dict[str, tuple[str, Callable[..., dict[str, Any]], Callable[[Path, np.ndarray], np.ndarray]]] = {
    "onnx": ("model.onnx", export_onnx, run_onnx),
    "torchscript": ("model.pt", export_torchscript, run_torchscript),
}


def largest_difference(model: nn.Module, run: Callable[[Path, np.ndarray], np.ndarray], path: Path,
                       spec: InputSpec, seed: int = 0) -> float:
    """Largest |probability| difference between the file and the model on a few seeded
    inputs, at two batch sizes (the batch axis is dynamic)."""
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for n in (1, 3):
        inputs = torch.randn(n, spec.channels, spec.size, spec.size, generator=generator)
        with torch.inference_mode():
            expected = model(inputs).numpy()
        worst = max(worst, float(np.abs(run(path, inputs.numpy()) - expected).max()))
    return worst


def description(run_cfg: DictConfig, spec: InputSpec, point: dict[str, Any], file: str, fmt: str) -> dict[str, Any]:
    """model.json: how to prepare an image, what comes out, how to call it (the checkpoint's
    operating point), where it came from."""
    temperature = float(point.get("temperature", 1.0))
    preprocessing = OmegaConf.to_container(run_cfg.preprocessing, resolve=True)
    steps = {k: v for k, v in preprocessing.items() if k not in ("_target_", "cache", "cache_dir")}
    return {
        "model": file,
        "format": fmt,
        "input": {
            "name": INPUT if fmt == "onnx" else None, "shape": ["batch", spec.channels, spec.size, spec.size],
            "dtype": "float32", "size": spec.size, "channels": spec.channels, "mean": list(spec.mean), "std": list(spec.std),
        },
        "output": {"name": OUTPUT if fmt == "onnx" else None, "shape": ["batch"],
                   "meaning": f"probability of {POSITIVE} (the sigmoid is part of the graph"
                   + (f", after the logit is divided by the fitted temperature {temperature:.4g})" if temperature != 1.0 else ")")},
        "threshold": float(point["threshold"]),
        "threshold_rule": point.get("rule"),
        "threshold_chosen_on": point.get("split"),
        "temperature": temperature,
        "labels": list(LABELS),
        "positive_label": POSITIVE,
        "preparation": [
            "read the file as 8-bit grayscale: colour to luminance (OpenCV BGR2GRAY), alpha dropped, "
            "deeper than 8 bits stretched from the image's own minimum to maximum, DICOM with its "
            "modality and VOI LUTs (MONOCHROME1 inverted)",
            "apply `preprocessing`: every step null, nothing to do; `crop`, `inpaint` or `lungs` set, covid-tl's "
            "covid_tl.preprocess.pipeline.build_preprocess(crop, inpaint, lungs) with these settings "
            "(`lungs` with covid-tl's lung segmenter)",
            "resize to size x size, aspect ratio not kept (OpenCV INTER_AREA when either side "
            "shrinks, INTER_LINEAR otherwise)",
            "divide by 255, repeat to `channels`, subtract `mean` and divide by `std` per channel",
            "stack images as (batch, channels, size, size) float32",
            "call covid where the output is at or above `threshold`",
        ],
        "preprocessing": steps,
        "backbone": run_cfg.backbone.name,
        "intended_use": INTENDED_USE,
        **provenance(),
    }


def export(cfg: DictConfig, output_dir: Path) -> Path:
    """Writes the model file and model.json into output_dir; returns the model file's path."""
    check_script_config(cfg)  # required values and counts, before the checkpoint is read
    if cfg.format not in FORMATS:
        raise ConfigError(f"unknown format {cfg.format!r}; valid: {', '.join(FORMATS)}")
    needed = ("onnx", "onnxscript", "onnxruntime") if cfg.format == "onnx" else ()
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"format=onnx needs {', '.join(missing)}: pip install 'covid-tl[export]'")
    run_cfg, classifier = load_run(cfg.ckpt_path, cfg.trust_checkpoint)
    file, write, run = FORMATS[cfg.format]
    spec = classifier.net.input_spec
    model = ProbabilityOutput(classifier.net).eval()
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / file
    details = write(model, torch.zeros(2, spec.channels, spec.size, spec.size), path)
    difference = largest_difference(model, run, path, spec)
    if difference > TOLERANCE:
        raise ConfigError(f"the exported {path} differs from the checkpoint by {difference:.2g} in probability")
    info = description(run_cfg, spec, classifier.operating_point, file, cfg.format)
    info.update(details, checkpoint=str(cfg.ckpt_path), largest_difference_to_checkpoint=difference)
    (output_dir / "model.json").write_text(json.dumps(info, indent=2) + "\n")
    log.info("exported %s (largest difference to the checkpoint: %.1g)", path, difference)
    return path
