"""The study's finding, reproduced on phantoms: a model trained where burned-in marks go with
COVID-19 (a) scores well on data drawn the same way, (b) loses clearly once the marks are
gone, and (c) puts more of its Grad-CAM mass on marks than the same model trained on
crop_inpaint images; and (d) the shortcut audit flags it: the other class's marks pasted on flip
no-finding calls, and the label survives the lungs' removal. Slow (about a minute and a half);
run in CI."""

import pandas as pd
import pytest

from conftest import composed, run_script
from covid_tl.reporting.results import read_results
from covid_tl.audit import verdicts
from covid_tl.tasks.audit import audit
from covid_tl.tasks.evaluate import evaluate
from covid_tl.tasks.explain import explain

pytestmark = pytest.mark.slow

DATA = [
    "data.sources.synthetic.n_patients=300",
    "data.sources.synthetic.image_size=64",
    "data.sources.synthetic.opacity=[0.0,0.15]",  # the disease signal is faint: the marks are the easy cue
    "data.sources.synthetic.shortcut.kinds=[text]",
    "data.sources.synthetic.shortcut.positions=[corner]",
]
TRAIN = ["backbone=simple_cnn", "backbone.input_size=64", "optimizer.lr=3e-4", "trainer.max_epochs=20",
         "logger=none", "callbacks.grad_cam=null", "bootstrap=50"]


def test_marks_are_learned_as_a_shortcut_and_inpainting_moves_the_heatmaps_off_them(tmp_path):
    cache = f"preprocessing.cache_dir={tmp_path / 'cache'}"
    runs, scores = {}, {}
    for preprocessing in ("none", "crop_inpaint"):
        run_dir = tmp_path / preprocessing
        proc = run_script("train.py", f"hydra.run.dir={run_dir}", f"preprocessing={preprocessing}", cache, *DATA,
                          "data.sources.synthetic.shortcut.p_covid=0.9", *TRAIN)
        assert proc.returncode == 0, proc.stderr[-4000:]
        runs[preprocessing] = read_results(run_dir)
        ckpt = run_dir / runs[preprocessing].run["best_checkpoint"]
        # explain and evaluate in this process: the scripts' own paths are tested elsewhere, and
        # each subprocess would spend ~8 s importing what this one has imported already.
        out = tmp_path / f"cam_{preprocessing}"
        explain(composed("explain", f"ckpt_path={ckpt}", "n=40", run_dir=str(out)), out)
        scores[preprocessing] = pd.read_csv(out / "cams.csv")["artifact_fraction"].mean()

    marked = runs["none"].sets["test"]["accuracy"]
    assert marked >= 0.8, runs["none"].sets["test"]  # (a)

    ckpt = tmp_path / "none" / runs["none"].run["best_checkpoint"]
    out = tmp_path / "clean"
    clean = evaluate(composed("evaluate", f"ckpt_path={ckpt}", "data=synthetic", *DATA, "data.sources.synthetic.shortcut.p_covid=0",
                              "bootstrap=50", run_dir=str(out)), out).sets["test"]["accuracy"]
    assert clean <= marked - 0.2, (marked, clean)  # (b)

    assert scores["none"] >= 2 * scores["crop_inpaint"] and scores["none"] - scores["crop_inpaint"] >= 0.05, scores  # (c)

    out = tmp_path / "audit"
    record = audit(composed("audit", f"ckpt_path={ckpt}", "bootstrap=200", "shortcuts.cams=false",
                            "shortcuts.positions=[corner]", run_dir=str(out)), out)  # where these phantoms carry marks
    found = {(t["test"], t.get("metric")): t for t in record["tests"] if "skipped" not in t}
    flips, removed = found[("mark transplant", "no_finding -> covid")], found[("lungs removed", "AUROC")]
    assert flips["value"] >= 0.3 and flips["verdict"] == verdicts.SHORTCUT, flips  # (d)
    assert removed["value"] >= 0.75 and removed["verdict"] == verdicts.SHORTCUT, removed
    print(f"marked test accuracy {marked:.3f}, without marks {clean:.3f}; "
          f"artifact_fraction none {scores['none']:.3f} vs crop_inpaint {scores['crop_inpaint']:.3f}; "
          f"audit: {flips['value']:.2f} of no-finding calls flipped by marks, AUROC {removed['value']:.3f} without lungs")
