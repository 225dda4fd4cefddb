"""Where the CAMs fall, both classes: lung_fraction per class against its chance level, lungs
from the drawn masks vs from the segmenter (docs/results.md).

    python evaluate.py ckpt_path=<run>/checkpoints/<best>.ckpt cams=true 'splits=[train,val,test]' hydra.run.dir=<A>
    python evaluate.py ckpt_path=<same> cams=true 'splits=[train,val,test]' cam.lungs.mode=segmenter_only hydra.run.dir=<B>
    python benchmarks/cam_lungs.py <A> <B> [--set test] [--out cam_lungs.png]
    python benchmarks/cam_lungs.py --tiny --out /tmp/cam_lungs.png   # trains the small CNN 1 epoch, then both (seconds)

<A> scores the Cohen films against their drawn masks and the NIH films against the segmenter's;
<B> scores every film against the segmenter's. Prints a Markdown table (means, 95% patient
bootstrap intervals) and the per-film agreement of masks and segmenter on the Cohen films.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from covid_tl.core.labels import DISPLAY  # noqa: E402
from covid_tl.stats.metrics import bootstrap_mean  # noqa: E402
from harness import TINY_XRAY_MINI, evaluate, train, xray_mini_or_skip, xray_mini_data  # noqa: E402


def rows(table: pd.DataFrame, seed: int) -> list[dict]:
    """Per class: lung_fraction, lung_area and their difference with patient bootstrap intervals."""
    out = []
    for label, part in table.groupby("label", sort=True):
        part = part[part["lung_fraction"].notna()]
        short = "masks" if (part["lung_source"] == "mask").all() else "segmenter"
        entry = {"class": DISPLAY.get(label, label), "short": short, "images": len(part),
                 "patients": part["patient_id"].nunique(),
                 "from": ", ".join(f"{k} {v}" for k, v in part["lung_source"].value_counts().items())}
        for name in ("lung_fraction", "lung_area", "above_chance"):
            values = part[name].to_numpy(float)
            entry[name], entry[f"{name}_ci"] = values.mean(), bootstrap_mean(values, part["patient_id"].to_numpy(), seed=seed)
        out.append(entry)
    return out


def cell(entry: dict, name: str) -> str:
    low, high = entry[f"{name}_ci"]
    return f"{entry[name]:.3f} [{low:.3f}, {high:.3f}]"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("masks_first", type=Path, nargs="?", help="evaluate run dir with cam.lungs.mode=segmenter (the default)")
    parser.add_argument("segmenter_only", type=Path, nargs="?", help="evaluate run dir with cam.lungs.mode=segmenter_only")
    parser.add_argument("--set", default="test", help="a set of cams.csv, or 'all'")
    parser.add_argument("--out", type=Path, default=Path("cam_lungs.png"))
    parser.add_argument("--seed", type=int, default=42, help="bootstrap seed (evaluate uses the run's seed, 42)")
    parser.add_argument("--tiny", action="store_true", help="make <A> and <B> from a 1-epoch small CNN on xray-mini")
    args = parser.parse_args(argv)
    if not args.tiny:
        if args.segmenter_only is None:
            parser.error("give the two evaluate run dirs <A> <B>, or --tiny")
        return analyse(args.masks_first, args.segmenter_only, args.set, args.seed, args.out)
    if (root := xray_mini_or_skip()) is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        a, b = tiny_runs(root, Path(tmp))
        return analyse(a, b, "test", args.seed, args.out)


def tiny_runs(root: Path, tmp: Path) -> tuple[Path, Path]:
    """<A> and <B> of the docstring for a 1-epoch small CNN on xray-mini (test films only)."""
    run = train([*xray_mini_data(root), *TINY_XRAY_MINI, "logger=none", "callbacks.grad_cam=null"], tmp / "run")
    ckpt = f"ckpt_path={run.directory / run.results.run['best_checkpoint']}"
    for mode in ("segmenter", "segmenter_only"):
        evaluate([ckpt, "cams=true", "splits=[test]", f"cam.lungs.mode={mode}", "bootstrap=20"], tmp / mode)
    return tmp / "segmenter", tmp / "segmenter_only"


def analyse(masks_first: Path, segmenter_only: Path, which: str, seed: int, out: Path) -> dict[str, Any]:
    """The table, the mask/segmenter agreement and the figure of the two evaluate runs' cams.csv."""
    a, b = (pd.read_csv(d / "cams.csv") for d in (masks_first, segmenter_only))
    if which != "all":
        a, b = a[a["set"] == which], b[b["set"] == which]
    entries = rows(a, seed) + [e for e in rows(b, seed) if e["class"] == DISPLAY["covid"]]
    print("| class | lungs from | images (patients) | lung_fraction | lung_area (chance) | above chance |")
    print("|---|---|---|---|---|---|")
    for e in entries:
        print(f"| {e['class']} | {e['from']} | {e['images']} ({e['patients']}) | {cell(e, 'lung_fraction')} | "
              f"{cell(e, 'lung_area')} | {cell(e, 'above_chance')} |")
    pair = a.merge(b, on=["set", "path"], suffixes=("_mask", "_seg"))
    pair = pair[pair["lung_source_mask"] == "mask"]
    difference = pair["lung_fraction_seg"] - pair["lung_fraction_mask"]
    r = np.corrcoef(pair["lung_fraction_mask"], pair["lung_fraction_seg"])[0, 1]
    print(f"\nCohen films with drawn masks: {len(pair)}; segmenter - mask lung_fraction: mean {difference.mean():+.3f}, "
          f"mean |difference| {difference.abs().mean():.3f}, Pearson r {r:.3f}; lung_area mean "
          f"{pair['lung_area_mask'].mean():.3f} (mask) vs {pair['lung_area_seg'].mean():.3f} (segmenter)")
    plot(entries, pair, r, which, out)
    print(f"\nwrote {out}")
    return {"entries": entries, "pair": pair, "r": r}


def plot(entries: list[dict], pair: pd.DataFrame, r: float, which: str, out: Path) -> None:
    """Bars per class (CAM mass in the lungs beside the lungs' share) and the mask/segmenter scatter."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1.5, 1]})
    names = [f"{e['class']}\nlungs: {e['short']}" for e in entries]
    x = np.arange(len(entries))
    for offset, name, colour, label in ((-0.18, "lung_fraction", "tab:red", "lung_fraction (CAM mass in lungs)"),
                                        (0.18, "lung_area", "tab:grey", "lung_area (chance level)")):
        values = np.array([e[name] for e in entries])
        ci = np.array([e[f"{name}_ci"] for e in entries])
        left.bar(x + offset, values, 0.36, color=colour, label=label,
                 yerr=np.vstack([values - ci[:, 0], ci[:, 1] - values]), capsize=3)
    left.set_xticks(x, names, fontsize=8)
    left.set_ylim(0, 1)
    left.set_ylabel(f"mean over {which} images")
    left.legend(fontsize=8, loc="upper left")
    left.set_title("Where the Grad-CAMs fall (whiskers: 95% patient bootstrap)", fontsize=9)
    left.grid(axis="y", alpha=0.3)
    right.scatter(pair["lung_fraction_mask"], pair["lung_fraction_seg"], s=14, color="tab:red")
    right.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1)
    right.set_xlabel("lung_fraction, drawn mask")
    right.set_ylabel("lung_fraction, segmenter")
    right.set_title(f"COVID-19 (Cohen) films: mask vs segmenter (r = {r:.2f})", fontsize=9)
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    main()
