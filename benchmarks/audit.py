"""The shortcut audit's time per test on xray-mini: where `python audit.py` spends its seconds, so
that an audit's cost can be planned (train.py audit=true adds it to every run).

    python benchmarks/audit.py [--recipe today|robust] [--seed 1] [--runs DIR] [--out table.md] [override ...]

Trains one model of the recipe on xray-mini (`--runs DIR`: into DIR/<recipe>/, read instead when
its results.json is there; default a temporary folder), then times three audits, every test
included (Grad-CAM heat too): `audit.py` on its checkpoint's test split; again with
`external=[<xray-views manifest>]` when xray-views is found ($COVID_TL_XRAY_VIEWS, else
../shared/data/xray-views beside the repository; else skipped, saying so); and `audit.py mode=data data=xray_mini` on the recipe's
backbone, no model. Prints a markdown table: audit, step, seconds, films (audit.json's `seconds`;
films: those of its sets, or the training films searched for marks for the mark bank).
`--tiny`: the small CNN for 1 epoch, bootstrap=20, 8 films of each label of xray-views, in a
temporary folder (about a minute). Skips with a message when xray-mini is absent.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from covid_tl.core.labels import LABELS
from harness import TINY_XRAY_MINI, audit, machine, train, xray_mini_data, xray_mini_or_skip, xray_views

BASE = ["logger=none", "callbacks.grad_cam=null"]
RECIPES = {
    "today": ["backbone=efficientnet_lite0", "backbone.weights=imagenet_offline", "freeze=all", "preprocessing=crop_inpaint"],
    "robust": ["experiment=robust"],  # EfficientNet-Lite0, last 2 blocks fine-tuned on lung fields, youden
}
BACKBONES = {"today": ["backbone=efficientnet_lite0", "backbone.weights=imagenet_offline"],
             "robust": ["backbone=efficientnet_lite0", "backbone.weights=imagenet_offline"],
             "tiny": ["backbone=simple_cnn", "backbone.input_size=32"]}  # mode=data: the recipe's frozen backbone
TINY_EXTERNAL_FILMS = 8  # --tiny: films of each label taken from xray-views


def cut_manifest(manifest: Path, per_label: int, out: Path) -> Path:
    """The first `per_label` films of each label of `manifest`, paths made absolute, as a CSV at
    `out` (--tiny: an external set of seconds, not minutes)."""
    frame = pd.read_csv(manifest, keep_default_na=False)
    frame = pd.concat([frame[frame["label"] == label].head(per_label) for label in LABELS], ignore_index=True)
    for column in ("path", "lung_mask"):
        if column in frame:
            frame[column] = [str(manifest.parent / p) if p else p for p in frame[column]]
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    return out


def step_rows(name: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per timed step of an audit.json: seconds, and the films the step went over."""
    films = sum(s["n"] for s in record["sets"].values())
    searched = sum(m["films_searched"] for m in (record.get("marks") or {}).values())
    return [{"audit": name, "step": step, "seconds": seconds, "films": searched if step == "mark bank" else films}
            for step, seconds in record["seconds"].items()]


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| audit | step | seconds | films |", "|---|---|---|---|"]
    lines += [f"| {r['audit']} | {r['step']} | {r['seconds']:.2f} | {r['films']} |" for r in rows]
    return "\n".join(lines)


def audits(ckpt: Path, data: list[str], backbone: list[str], bootstrap: int,
           external: Path | None, out: Path) -> dict[str, dict[str, Any]]:
    """The three audits of the module docstring (the external one only with `external`)."""
    common = [f"bootstrap={bootstrap}"]
    records = {"test split": audit([f"ckpt_path={ckpt}", *common], out / "test")}
    if external is not None:
        records["test split + xray-views"] = audit([f"ckpt_path={ckpt}", f"external=[{external}]", *common],
                                                   out / "external")
    records["mode=data, xray-mini"] = audit(["mode=data", *data, *backbone, *common], out / "data")
    return records


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="today", choices=list(RECIPES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of every audit")
    parser.add_argument("--runs", type=Path, help="train into (or read from) DIR/<recipe>/; default a temporary folder")
    parser.add_argument("--out", type=Path, help="also write the table here")
    parser.add_argument("--tiny", action="store_true", help="the small CNN, 1 epoch, bootstrap=20, a temporary folder")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if (root := xray_mini_or_skip()) is None:
        return {}
    print(machine())
    name, recipe = ("tiny", TINY_XRAY_MINI) if args.tiny else (args.recipe, RECIPES[args.recipe])
    bootstrap = 20 if args.tiny else args.bootstrap
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) if args.tiny or args.runs is None else args.runs
        run = train([*BASE, *xray_mini_data(root), *recipe, f"seed={args.seed}", *args.overrides], runs / name / "run",
                    reuse=True)
        print(f"{name}: test AUROC {run.results.set('test')['auroc']:.3f}, {run.results.set('test')['n']} test films "
              f"({'read' if run.fit_s is None else f'trained in {run.wall_s:.0f} s'})", flush=True)
        external = views / "manifest.csv" if (views := xray_views()) else None
        if external is None:
            print("external audit skipped: no xray-views manifest (set COVID_TL_XRAY_VIEWS to its folder)")
        elif args.tiny:
            external = cut_manifest(external, TINY_EXTERNAL_FILMS, Path(tmp) / "external" / "xray-views.csv")
        records = audits(run.directory / run.results.run["best_checkpoint"], xray_mini_data(root),
                         BACKBONES[name], bootstrap, external, runs / name / "audits")
    rows = [row for label, record in records.items() for row in step_rows(label, record)]
    text = markdown(rows) + (f"\n\n{name} recipe ({' '.join(recipe)}), seed {args.seed}, bootstrap={bootstrap}; "
                             "seconds from each audit.json; films: of the audited sets (mark bank: training films searched).")
    print("\n" + text)
    if args.out:
        args.out.write_text(text + "\n")
    return {"run": run, "audits": records, "rows": rows}


if __name__ == "__main__":
    main()
