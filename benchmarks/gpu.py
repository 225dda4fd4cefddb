"""GPU benchmark: fine-tuning images/s and model FLOP utilisation, the frozen fast path, and
how long the GPU waits for the data pipeline. One command, under 5 minutes on an H100:

    python benchmarks/gpu.py [--out gpu-benchmark] [--peak-tflops P] [--no-compile]
    python benchmarks/gpu.py --tiny --out /tmp/gpu-tiny      # CPU, tiny sizes, seconds (the test)

Writes `<out>/gpu.json` and `<out>/gpu.md`. FLOPs of one training step (forward, backward)
are counted by torch.utils.flop_counter.FlopCounterMode; MFU = counted FLOPs per second /
the card's dense bf16 peak (PEAK_BF16_TFLOPS by device name, or --peak-tflops). Fine-tuning:
every parameter trains, Adam, bf16 autocast and channels_last on CUDA, with and without
torch.compile. GPU idle share = time spent waiting for the next batch / epoch time, with a
synchronize after each step so that waiting means an idle GPU.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from covid_tl.data.datamodule import XrayDataModule, default_num_workers
from covid_tl.data.sources import ManifestSource
from covid_tl.models.classifier import build_classifier
from covid_tl.preprocess.cache import PreprocessCache

#: Dense bf16 tensor-core peak, TFLOPS, by a part of the device name (first match wins).
PEAK_BF16_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0),
                    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0))


@dataclass(frozen=True)
class Setting:
    models: tuple[str, ...]
    size: int
    batch: int
    warmup: int
    steps: int
    films: int
    film_size: int
    fast_path_images: int


FULL = Setting(("vgg16", "resnet50", "efficientnet_lite0"), 224, 64, 5, 20, 512, 1024, 4096)
TINY = Setting(("simple_cnn",), 64, 8, 1, 3, 24, 96, 64)


def peak_tflops(device_name: str, given: float | None) -> tuple[float | None, str]:
    """The bf16 peak to divide by, and where it came from."""
    if given is not None:
        return given, "--peak-tflops"
    for part, peak in PEAK_BF16_TFLOPS:
        if part.lower() in device_name.lower():
            return peak, f"table ({part})"
    return None, "unknown device: pass --peak-tflops"


def train_step_flops(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> int:
    """FLOPs of one forward + backward pass, counted by torch (the gradients are dropped)."""
    with FlopCounterMode(display=False) as counter:
        F.binary_cross_entropy_with_logits(model(images), targets).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, warmup: int, steps: int) -> float:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    device = images.device

    def step() -> None:
        with _autocast(device):
            loss = F.binary_cross_entropy_with_logits(model(images).float(), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def network(name: str, size: int, device: torch.device) -> nn.Module:
    options = {"input_size": size} if name in ("simple_cnn", "simple_fc", "vgg16") else {}
    net = build_classifier({"name": name, "weights": "none", **options}).to(device).train()
    return net.to(memory_format=torch.channels_last) if device.type == "cuda" else net


def batch(net: nn.Module, size: int, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(n, net.input_spec.channels, size, size, device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images, (torch.arange(n, device=device) % 2).float()


def fine_tuning(name: str, s: Setting, device: torch.device, compiled: bool, peak: float | None) -> dict[str, Any]:
    net = network(name, s.size, device)
    images, targets = batch(net, s.size, s.batch, device)
    flops = train_step_flops(net, images, targets)
    seconds = seconds_per_step(torch.compile(net) if compiled else net, images, targets, s.warmup, s.steps)
    achieved = flops / seconds
    return {"model": name, "compile": compiled, "size": s.size, "batch": s.batch, "steps": s.steps,
            "flops_per_step": flops, "seconds_per_step": seconds, "images_per_s": s.batch / seconds,
            "achieved_tflops": achieved / 1e12, "mfu": achieved / (peak * 1e12) if peak else None}


def frozen_fast_path(name: str, s: Setting, device: torch.device) -> dict[str, Any]:
    """Backbone features of `fast_path_images` images once, then one head epoch on them."""
    net = network(name, s.size, device)
    net.features.requires_grad_(False)
    net.eval()
    images, _ = batch(net, s.size, s.batch, device)
    rounds = max(1, s.fast_path_images // s.batch)
    with torch.no_grad(), _autocast(device):  # no_grad: the head trains on these tensors
        net.features(images)  # warm-up
        _sync(device)
        start = time.perf_counter()
        features = torch.cat([net.features(images).float() for _ in range(rounds)])
        _sync(device)
    extract = time.perf_counter() - start
    targets = (torch.arange(len(features), device=device) % 2).float()
    optimizer = torch.optim.Adam(net.head.parameters(), lr=1e-3)
    net.head.train()
    start = time.perf_counter()
    for begin in range(0, len(features), s.batch):
        loss = F.binary_cross_entropy_with_logits(net.head(features[begin:begin + s.batch]).squeeze(1),
                                                  targets[begin:begin + s.batch])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    head = time.perf_counter() - start
    return {"model": name, "images": len(features), "feature_images_per_s": len(features) / extract,
            "head_epoch_s": head, "head_images_per_s": len(features) / head}


def data_pipeline(s: Setting, device: torch.device, workdir: Path) -> dict[str, Any]:
    """A cold then a warm epoch over films on disk into the fine-tuned model (cache on)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from films import render_films  # benchmarks/films.py, beside this script

    manifest = render_films(workdir / "films", s.films, s.film_size)
    name = s.models[-1] if len(s.models) == 1 else "resnet50"
    net = network(name, s.size, device)
    workers = default_num_workers(device.type == "cuda")
    dm = XrayDataModule({"films": ManifestSource(manifest)}, net.input_spec, val_fraction=0.05, test_fraction=0.0,
                        batch_size=s.batch, num_workers=workers, pin_memory=device.type == "cuda",
                        cache=PreprocessCache(workdir / "cache", {"steps": []}))
    dm.setup()
    loader = dm.train_dataloader()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    epochs = {}
    for epoch in ("cold", "warm"):
        wait = images = 0.0
        start = time.perf_counter()
        ready = time.perf_counter()
        for x, y in loader:
            wait += time.perf_counter() - ready
            x = x.to(device, non_blocking=True)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device):
                loss = F.binary_cross_entropy_with_logits(net(x).float(), y.to(device).float())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            _sync(device)
            images += len(x)
            ready = time.perf_counter()
        total = time.perf_counter() - start
        epochs[epoch] = {"images_per_s": images / total, "wait_s": wait, "epoch_s": total, "gpu_idle_share": wait / total}
    return {"model": name, "films": s.films, "film_size": s.film_size, "num_workers": workers, **epochs}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"device: {result['device']}; bf16 peak {result['peak_tflops']} TFLOPS ({result['peak_source']})", "",
             "| model | compile | batch | images/s | TFLOPS | MFU |", "|---|---|---|---|---|---|"]
    for r in result["fine_tuning"]:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        lines.append(f"| {r['model']} | {r['compile']} | {r['batch']} | {r['images_per_s']:.1f} | "
                     f"{r['achieved_tflops']:.2f} | {mfu} |")
    f = result["frozen_fast_path"]
    lines += ["", f"frozen fast path ({f['model']}, {f['images']} images): features {f['feature_images_per_s']:.0f} "
              f"images/s, head epoch {f['head_epoch_s'] * 1e3:.1f} ms ({f['head_images_per_s']:.0f} images/s)"]
    d = result["data_pipeline"]
    for epoch in ("cold", "warm"):
        e = d[epoch]
        lines.append(f"data pipeline, {epoch} epoch ({d['films']} films of {d['film_size']} px, {d['num_workers']} "
                     f"workers, {d['model']}): {e['images_per_s']:.1f} images/s, GPU idle {100 * e['gpu_idle_share']:.1f}%")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-benchmark"))
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the device")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and model, on the CPU (seconds)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile runs")
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    setting = TINY if args.tiny else FULL
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})"
    peak, peak_source = peak_tflops(name, args.peak_tflops)
    torch.backends.cudnn.benchmark = True
    compiles = (False,) if args.tiny or args.no_compile else (False, True)
    started = time.perf_counter()
    result: dict[str, Any] = {"device": name, "peak_tflops": peak, "peak_source": peak_source, "torch": torch.__version__,
                              "fine_tuning": [fine_tuning(m, setting, device, c, peak) for m in setting.models for c in compiles],
                              "frozen_fast_path": frozen_fast_path(setting.models[-1], setting, device)}
    with tempfile.TemporaryDirectory() as tmp:
        result["data_pipeline"] = data_pipeline(setting, device, Path(tmp))
    result["wall_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "gpu.md").write_text(markdown(result))
    print(markdown(result) + f"written: {args.out / 'gpu.json'}, {args.out / 'gpu.md'} ({result['wall_s']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
