"""Framework overhead: covid-tl's train task against a plain PyTorch loop, same model, data,
epochs, DataLoader, optimizer and precision, on xray-mini.

    python benchmarks/overhead.py [--rounds 2] [--models simple_cnn,efficientnet_lite0] [override ...]

Per model, alternately a plain loop (in this process) and `train.py` (a subprocess, its logged
"training took" time: trainer.fit, i.e. every train and validation epoch, the sanity check,
checkpoints, callbacks), `--rounds` times each: plain, covid-tl, plain, covid-tl; the minimum
of each is reported, since other jobs share the machine. Overrides go to both (e.g.
`callbacks=none`). Skips with a message when xray-mini is absent.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from covid_tl.build import build_datamodule
from covid_tl.models.classifier import build_classifier

ROOT = Path(__file__).resolve().parents[1]
XRAY_MINI = Path(os.environ.get("COVID_TL_XRAY_MINI", ROOT.parent / "shared" / "data" / "xray-mini"))
MODELS = {
    "simple_cnn": ["backbone=simple_cnn", "trainer.max_epochs=10"],
    "efficientnet_lite0": ["backbone=efficientnet_lite0", "backbone.weights=imagenet_offline", "freeze=none",
                           "trainer.max_epochs=2"],
}
COMMON = ["data=xray_mini", f"data.path={XRAY_MINI}/manifest.csv", "trainer.accelerator=cpu", "logger=none",
          "bootstrap=100"]


def plain_loop(overrides: list[str]) -> float:
    """The same epochs by hand: train then validate, Adam over the trainable parameters."""
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose("train", overrides)
    pl.seed_everything(cfg.seed)
    net = build_classifier(cfg.backbone)
    instantiate(cfg.freeze)(net)
    datamodule = build_datamodule(cfg, net.input_spec)
    datamodule.setup("fit")
    optimizer = instantiate(cfg.optimizer)([p for p in net.parameters() if p.requires_grad])
    train, val = datamodule.train_dataloader(), datamodule.val_dataloader()
    start = time.perf_counter()
    for epoch in range(cfg.trainer.max_epochs):
        train.sampler.set_epoch(epoch)
        net.train()
        for images, targets in train:
            loss = F.binary_cross_entropy_with_logits(net(images), targets.float())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        net.eval()
        with torch.no_grad():
            for images, targets in val:
                F.binary_cross_entropy_with_logits(net(images), targets.float())
    return time.perf_counter() - start


def covid_tl_run(overrides: list[str], run_dir: Path) -> float:
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}"],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return float(re.search(r"training took ([0-9.]+) s", proc.stdout + proc.stderr).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if not (XRAY_MINI / "manifest.csv").is_file():
        print(f"skipped: xray-mini not found at {XRAY_MINI} (set COVID_TL_XRAY_MINI)")
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
          f"{' '.join(COMMON[2:] + args.overrides)}")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            overrides = [*COMMON, *MODELS[model], *args.overrides]
            plain, ours = [], []
            for n in range(args.rounds):
                plain.append(plain_loop(overrides))
                ours.append(covid_tl_run(overrides, Path(tmp) / f"{model}{n}"))
            print(f"{model} ({' '.join(MODELS[model][1:])}): plain {min(plain):.2f} s, covid-tl {min(ours):.2f} s "
                  f"-> {min(ours) / min(plain):.3f}x  (all: plain {', '.join(f'{t:.2f}' for t in plain)}; "
                  f"covid-tl {', '.join(f'{t:.2f}' for t in ours)})", flush=True)


if __name__ == "__main__":
    main()
