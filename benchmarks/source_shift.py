"""Source shift on phantoms (data=synthetic_shift): specificity and sensitivity in distribution
(val: hospitals A and B) against the held-out hospital C, per setting and seed.

    python benchmarks/source_shift.py [--settings NAME ...] [--seeds 1 2 3]
        [--add NAME="OVERRIDE OVERRIDE ..."] [--runs DIR] [--out table.md] [--no-audit] [override ...]

Every run is `python train.py` with BASE (today's recipe: frozen ImageNet EfficientNet-Lite0),
the setting's overrides (the cnn_* settings train the small CNN from scratch instead), the seed
and the trailing overrides; `--add lungs="preprocessing=lungs"` adds a setting. Default: every
setting in SETTINGS, seed 1. `lungs` settings use the bundled lung segmenter
(preprocessing=lungs: lung-field crop, histogram equalisation on lung pixels). Prints a line
per finished run, then a markdown table (mean and, with several seeds, the spread over seeds);
`--runs` keeps the run dirs (results.json, predictions.csv). After each run, `audit.py` (Grad-CAM
heat left out) audits its best checkpoint on the val split (hospitals A and B) and hospital C
(the test split), into `<run>/audit/`: the table adds the lungs-removed AUROC on each, the
share of C's no-finding films called COVID-19 once COVID-19 marks are pasted on, and the
source probe on the three hospitals' no-finding films; `--no-audit` leaves them out. `--tiny`: the small CNN, 1 epoch,
20 phantom patients per hospital at 48 px, setting cnn_none (seconds).
"""
from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from covid_tl.core.formatting import number
from harness import Run, audit, audit_numbers, last_override, machine, train

BASE = ["data=synthetic_shift", "backbone=efficientnet_lite0", "backbone.weights=imagenet_offline", "freeze=all",
        "logger=none", "callbacks.grad_cam=null", "bootstrap=200"]
CNN = ["backbone=simple_cnn", "backbone.weights=none", "freeze=none", "trainer.max_epochs=20"]  # trained from scratch
TINY = ["data.phantoms.n_patients=20", "data.phantoms.image_size=48", "backbone.input_size=32", "trainer.max_epochs=1",
        "bootstrap=20"]
SETTINGS = {
    "none": ["preprocessing=none"],
    "crop_inpaint": ["preprocessing=crop_inpaint"],
    "acquisition": ["preprocessing=crop_inpaint", "augment=acquisition"],
    "lungs": ["preprocessing=lungs"],
    "lungs_ft2": ["preprocessing=lungs", "freeze=last_n", "freeze.trainable=2"],  # experiment=robust (+ threshold=youden)
    "cnn_none": [*CNN, "preprocessing=none"],
    "cnn_crop_inpaint": [*CNN, "preprocessing=crop_inpaint"],
    "cnn_acquisition": [*CNN, "preprocessing=crop_inpaint", "augment=acquisition"],
    "cnn_lungs": [*CNN, "preprocessing=lungs"],
    "cnn_lungs_acquisition": [*CNN, "preprocessing=lungs", "augment=acquisition"],
}
COLUMNS = [("specificity", "in_distribution"), ("specificity", "shifted"), ("specificity", "drop"),
           ("sensitivity", "in_distribution"), ("sensitivity", "shifted"), ("auroc", "shifted")]
AUDIT_COLUMNS = {"lungs_removed_in_dist": "AUROC lungs removed in-dist", "lungs_removed": "AUROC lungs removed at C",
                 "flips_to_covid": "flips to COVID-19 at C", "source_probe": "source probe, no finding (A, B, C)"}


def cpu_seconds() -> float:
    """CPU seconds of this process so far (runs are in it): unlike wall time, it does not grow
    when other jobs share the cores."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def run(overrides: list[str], run_dir: Path, audited: bool = True) -> tuple[dict, float, float, dict | None]:
    """One train.py run: (its results.json's shift block, wall seconds, CPU seconds of training,
    the audit's figures on hospital C or None with `audited` off)."""
    cpu = cpu_seconds()
    done = train(overrides, run_dir)
    spent = cpu_seconds() - cpu
    return done.results.shift, done.wall_s, spent, audit_at_c(done, overrides) if audited else None


def audit_at_c(done: Run, overrides: list[str]) -> dict:
    """audit.py on the run's best checkpoint, its val split (hospitals A and B, where source and
    label go together) and test split (hospital C), no Grad-CAM heat (the slowest test), the
    run's bootstrap: audit_numbers at C, the lungs-removed AUROC in distribution, and the source
    probe over all three hospitals' no-finding films."""
    ckpt = done.directory / done.results.run["best_checkpoint"]
    record = audit([f"ckpt_path={ckpt}", "splits=[val,test]", "shortcuts.cams=false",
                    f"bootstrap={last_override(overrides, 'bootstrap', '1000')}"], done.directory / "audit")
    in_distribution = audit_numbers(record, "val")
    return {**audit_numbers(record, "test"), "lungs_removed_in_dist": in_distribution["lungs_removed"],
            "lungs_removed_in_dist_ci95": in_distribution["lungs_removed_ci95"]}


def cell(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{np.mean(values):.2f}" + (f" ± {np.std(values, ddof=1):.2f}" if len(values) > 1 else "")


def table(rows: dict[str, list[tuple[dict, float, float, dict | None]]], seeds: list[int], audited: bool = True) -> str:
    head = ["setting", "spec in-dist", "spec at C", "spec drop", "sens in-dist", "sens at C", "AUROC at C",
            *(AUDIT_COLUMNS.values() if audited else []), "wall s/run", "CPU s/run"]
    lines = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    for name, runs in rows.items():
        cells = [cell([r[0][m][k] for r in runs]) for m, k in COLUMNS]
        if audited:
            cells += [cell([r[3][key] for r in runs]) for key in AUDIT_COLUMNS]
        times = [f"{np.mean([r[i] for r in runs]):.0f}" for i in (1, 2)]
        lines.append(f"| {name} | {' | '.join(cells + times)} |")
    note = (" Audit (audit.py splits=[val,test] shortcuts.cams=false): AUROC with the lung fields filled in on the "
            "val split (hospitals A and B) and at hospital C, share of C's no-finding films called COVID-19 once "
            "COVID-19 marks are pasted on, AUROC of a probe on the model's features telling the three hospitals' "
            "no-finding films apart; CPU s/run: training only.") if audited else ""
    return "\n".join(lines) + f"\n\nseeds {seeds}; mean ± sd over seeds where several.{note}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--add", action="append", default=[], metavar='NAME="OVERRIDES"')
    parser.add_argument("--runs", type=Path, help="keep the run dirs here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, help="also write the table here")
    parser.add_argument("--tiny", action="store_true", help="the small CNN, 1 epoch, few small phantoms, cnn_none")
    parser.add_argument("--no-audit", dest="audit", action="store_false", help="no audit.py of each run's checkpoint")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if args.tiny:
        args.settings, args.seeds, args.overrides = ["cnn_none"], [1], [*args.overrides, *TINY]
    settings = dict(SETTINGS)
    for item in args.add:
        name, _, overrides = item.partition("=")
        settings[name] = overrides.split()
        if name not in args.settings:
            args.settings.append(name)
    unknown = [s for s in args.settings if s not in settings]
    if unknown:
        raise SystemExit(f"error: unknown setting(s) {unknown}; known: {', '.join(settings)} (or --add NAME=...)")
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = args.runs or Path(tmp)
        rows: dict[str, list[tuple[dict, float, float, dict | None]]] = {}
        total, done = len(args.settings) * len(args.seeds), 0
        for name in args.settings:
            for seed in args.seeds:
                overrides = [*BASE, *settings[name], f"seed={seed}", *args.overrides]
                result = run(overrides, runs_dir / f"{name}_seed{seed}", args.audit)
                rows.setdefault(name, []).append(result)
                done += 1
                print(f"[{done}/{total}] {name} seed {seed}: {progress(*result)}", flush=True)
    text = table(rows, args.seeds, args.audit)
    print(f"\n{machine()}; base: {' '.join(BASE + args.overrides)}\n\n{text}")
    if args.out:
        args.out.write_text(text + "\n")
    return rows


def progress(shift: dict, wall: float, cpu: float, audited: dict | None) -> str:
    """A finished run in one line: the shift, the audit at C (when run), its times."""
    spec, sens = (shift[m] for m in ("specificity", "sensitivity"))
    line = (f"specificity {number(spec['in_distribution'], digits=2)} -> {number(spec['shifted'], digits=2)}, "
            f"sensitivity {number(sens['in_distribution'], digits=2)} -> {number(sens['shifted'], digits=2)}")
    if audited is not None:
        line += (f"; lungs removed AUROC in-dist {number(audited['lungs_removed_in_dist'], digits=2)}, at C "
                 f"{number(audited['lungs_removed'], audited['lungs_removed_ci95'], 2)}, flips to COVID-19 at C "
                 f"{number(audited['flips_to_covid'], audited['flips_to_covid_ci95'], 2)}, source probe "
                 f"{number(audited['source_probe'], audited['source_probe_ci95'], 2)}")
    return line + f" ({wall:.0f} s, CPU {cpu:.0f} s)"


if __name__ == "__main__":
    main()
