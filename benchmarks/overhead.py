"""Framework overhead: covid-tl's train task against a plain PyTorch loop, same model, data,
epochs, DataLoader, optimizer and precision, on xray-mini.

    python benchmarks/overhead.py [--rounds 2] [--models simple_cnn,efficientnet_lite0] [override ...]
    python benchmarks/overhead.py --tiny     # simple_cnn, 1 epoch, 32 px, one round (seconds)

Per model, alternately a plain loop and a `train.py` run (both in this process; covid-tl's
time is trainer.fit's, i.e. every train and validation epoch, checkpoints, callbacks),
`--rounds` times each: plain, covid-tl, plain, covid-tl; the minimum of each is reported,
since other jobs share the machine. Overrides go to both (e.g. `callbacks=none`). Skips with
a message when xray-mini is absent.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from covid_tl.engine.build import build_datamodule
from covid_tl.models.classifier import build_classifier
from harness import composed, machine, train, xray_mini_or_skip, xray_mini_data

MODELS = {
    "simple_cnn": ["backbone=simple_cnn", "trainer.max_epochs=10"],
    "efficientnet_lite0": ["backbone=efficientnet_lite0", "backbone.weights=imagenet_offline", "freeze=none",
                           "trainer.max_epochs=2"],
}
COMMON = ["trainer.accelerator=cpu", "logger=none", "bootstrap=100"]
TINY = ["backbone.input_size=32", "trainer.max_epochs=1"]


def plain_loop(overrides: list[str], run_dir: Path) -> float:
    """The same epochs by hand: train then validate, Adam over the trainable parameters."""
    cfg = composed("train", overrides, run_dir)
    pl.seed_everything(cfg.seed)
    net = build_classifier(cfg.backbone)
    instantiate(cfg.freeze)(net)
    datamodule = build_datamodule(cfg, net.input_spec)
    datamodule.setup("fit")
    optimizer = instantiate(cfg.optimizer)([p for p in net.parameters() if p.requires_grad])
    training, validation = datamodule.train_dataloader(), datamodule.val_dataloader()
    start = time.perf_counter()
    for epoch in range(cfg.trainer.max_epochs):
        training.sampler.set_epoch(epoch)
        net.train()
        for images, targets in training:
            loss = F.binary_cross_entropy_with_logits(net(images), targets.float())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        net.eval()
        with torch.no_grad():
            for images, targets in validation:
                F.binary_cross_entropy_with_logits(net(images), targets.float())
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tiny", action="store_true", help="simple_cnn, 1 epoch, 32 px, one round")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if (root := xray_mini_or_skip()) is None:
        return {}
    if args.tiny:
        args.models, args.rounds, args.overrides = "simple_cnn", 1, [*args.overrides, *TINY]
    print(f"{machine()}; {' '.join(COMMON + args.overrides)}")
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            overrides = [*xray_mini_data(root), *COMMON, *MODELS[model], *args.overrides]
            plain, ours = [], []
            for n in range(args.rounds):
                plain.append(plain_loop(overrides, Path(tmp) / f"plain_{model}{n}"))
                ours.append(train(overrides, Path(tmp) / f"{model}{n}").fit_s)
            times[model] = {"plain": plain, "covid_tl": ours}
            print(f"{model} ({' '.join(MODELS[model][1:])}): plain {min(plain):.2f} s, covid-tl {min(ours):.2f} s "
                  f"-> {min(ours) / min(plain):.3f}x  (all: plain {', '.join(f'{t:.2f}' for t in plain)}; "
                  f"covid-tl {', '.join(f'{t:.2f}' for t in ours)})", flush=True)
    return times


if __name__ == "__main__":
    main()
