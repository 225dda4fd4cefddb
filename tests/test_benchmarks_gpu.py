"""benchmarks/gpu.py on the CPU with --tiny: the figures it writes obey their definitions."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu():
    spec = importlib.util.spec_from_file_location("benchmark_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_train_step_flops_of_a_linear_layer(gpu):
    # forward 2 x 4 images x 10 inputs = 80; backward: weight gradient 80, no input gradient
    assert gpu.train_step_flops(nn.Linear(10, 1), torch.randn(4, 10), torch.zeros(4, 1)) == 160


def test_peak_lookup(gpu):
    assert gpu.peak_tflops("NVIDIA H100 80GB HBM3", None) == (989.0, "table (H100)")
    assert gpu.peak_tflops("NVIDIA H100 PCIe", None)[0] == 756.0
    assert gpu.peak_tflops("NVIDIA L4", None)[0] == 121.0
    assert gpu.peak_tflops("NVIDIA A100-SXM4-80GB", 100.0) == (100.0, "--peak-tflops")
    assert gpu.peak_tflops("Some new card", None)[0] is None


@pytest.mark.slow  # trains a tiny model for a few steps (about 2-8 s)
def test_tiny_run_writes_consistent_figures(gpu, tmp_path):
    gpu.main(["--tiny", "--peak-tflops", "2.0", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert (tmp_path / "gpu.md").read_text().count("| simple_cnn |") == 1
    (run,) = result["fine_tuning"]
    # simple_cnn, 8 images of 1x64x64: conv 3x3x16 (pad 1) 9,437,184 forward + 9,437,184 weight
    # gradient; FC 16,384->64 16,777,216 forward + 2 x 16,777,216 backward; FC 64->1 1,024 + 2,048
    assert run["flops_per_step"] == 69_209_088
    assert run["images_per_s"] == pytest.approx(run["batch"] / run["seconds_per_step"])
    assert run["images_per_s"] > 0
    assert run["mfu"] == pytest.approx(run["flops_per_step"] / run["seconds_per_step"] / 2.0e12)
    fast = result["frozen_fast_path"]
    assert fast["feature_images_per_s"] > 0 and fast["head_images_per_s"] > 0
    for epoch in ("cold", "warm"):
        figures = result["data_pipeline"][epoch]
        assert 0 <= figures["gpu_idle_share"] <= 1
        assert figures["gpu_idle_share"] == pytest.approx(figures["wait_s"] / figures["epoch_s"])
        assert figures["images_per_s"] > 0
    assert result["data_pipeline"]["num_workers"] == 0  # CPU: no worker processes
