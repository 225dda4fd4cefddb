"""Where the CAMs fall, both classes: lung_fraction per class against its chance level, lungs
from the drawn masks vs from the segmenter (docs/results.md).

    python evaluate.py ckpt_path=<run>/checkpoints/<best>.ckpt cams=true 'splits=[train,val,test]' hydra.run.dir=<A>
    python evaluate.py ckpt_path=<same> cams=true 'splits=[train,val,test]' lungs.mode=segmenter_only hydra.run.dir=<B>
    python benchmarks/cam_lungs.py <A> <B> [--set test] [--out cam_lungs.png]

<A> scores the Cohen films against their drawn masks and the NIH films against the segmenter's;
<B> scores every film against the segmenter's. Prints a Markdown table (means, 95% patient
bootstrap intervals) and the per-film agreement of masks and segmenter on the Cohen films.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from covid_tl.labels import DISPLAY  # noqa: E402
from covid_tl.metrics import bootstrap_mean  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("masks_first", type=Path, help="evaluate run dir with lungs.mode=segmenter (the default)")
    parser.add_argument("segmenter_only", type=Path, help="evaluate run dir with lungs.mode=segmenter_only")
    parser.add_argument("--set", default="test", help="a set of cams.csv, or 'all'")
    parser.add_argument("--out", type=Path, default=Path("cam_lungs.png"))
    parser.add_argument("--seed", type=int, default=42, help="bootstrap seed (evaluate uses the run's seed, 42)")
    args = parser.parse_args()
    a, b = (pd.read_csv(d / "cams.csv") for d in (args.masks_first, args.segmenter_only))
    if args.set != "all":
        a, b = a[a["set"] == args.set], b[b["set"] == args.set]
    entries = rows(a, args.seed) + [e for e in rows(b, args.seed) if e["class"] == DISPLAY["covid"]]
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
    plot(entries, pair, r, args.set, args.out)
    print(f"\nwrote {args.out}")


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
