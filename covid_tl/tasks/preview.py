"""Look before you trust: original, detected marks, result, for a sample of a data config.

    python -m covid_tl.tasks.preview data=xray_mini preprocessing=crop_inpaint n=16 out=preview.png

Takes the same overrides as train.py (plus `n`, `out`, `seed`). Each image gets three
panels, named in a header row, under its label, source and whole file name: the original
with the crop box (green), the marks the detector finds on the whole film in red (what
`crop_inpaint` paints over), and the model input: the image resized to the backbone's square
input (`backbone`, `backbone.input_size`), as the model gets it before augmentation; a legend
below says what the colours mean. With
preprocessing=lungs two more come before the last: the lung mask (blue) with the lung box on
the image the segmenter saw, and the lung crop before its intensity is standardised.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from covid_tl.engine.build import build_datamodule
from covid_tl.cam.callback import balanced_rows
from covid_tl.preprocess.marks import detect_marks
from covid_tl.models.classifier import build_classifier
from covid_tl.preprocess.panels import lung_panels, panels, preview_grid


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own = {k: v for k, v in (a.split("=", 1) for a in argv if a.split("=", 1)[0] in ("n", "out"))}
    overrides = [a for a in argv if a.split("=", 1)[0] not in ("n", "out")]
    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(str(conf), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    spec = build_classifier(cfg.backbone, load_pretrained=False).input_spec  # the size the model gets
    datamodule = build_datamodule(cfg, spec)
    datamodule.setup()
    manifest = datamodule.manifest
    n = int(own.get("n", 16))
    inpaint = OmegaConf.to_container(cfg.preprocessing, resolve=True).get("inpaint") or {}
    detector = lambda image: detect_marks(image, inpaint.get("detector"))  # noqa: E731
    steps = datamodule.prepared.preprocess
    with_lungs = getattr(steps, "lungs", None) is not None
    tiles, captions = [], []
    for i in balanced_rows(manifest.targets, n):
        row = manifest.frame.iloc[i].to_dict()
        original = datamodule.load_image(row)
        prepared = datamodule.prepared(row)
        # On the whole film, as the pipeline detects before it crops: the red is what gets painted over.
        lungs = lung_panels(*_lung_stages(steps, original)) if with_lungs else None
        tiles.append(panels(original, prepared, detector(original), datamodule.prepared.model_input(row, spec.size), lungs))
        captions.append(f"{row['label']} | {row['source']} | {Path(str(row['path'])).name}")
    out = Path(own.get("out", "preview.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), preview_grid(tiles, captions, input_size=spec.size)[:, :, ::-1])
    columns = ("original + crop box | detected marks | " + ("lung mask | lung crop | " if with_lungs else "")
               + f"model input {spec.size}x{spec.size}")
    print(f"wrote {out}: {len(tiles)} images ({columns})")
    return 0


def _lung_stages(steps, original):
    """(the image the segmenter saw, its lung field)."""
    base, _ = steps.before_lungs(original)
    return base, steps.lung_field(base)


if __name__ == "__main__":
    raise SystemExit(main())
