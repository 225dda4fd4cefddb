"""Look before you trust: original, detected marks, result, for a sample of a data config.

    python -m covid_tl.preprocess.preview data=xray_mini preprocessing=crop_inpaint n=16 out=preview.png

Takes the same overrides as train.py (plus `n`, `out`, `seed`). Each image gets three
panels: the original with the crop box (green), the marks the detector finds in red, and
the image as the model will get it (before resizing).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from covid_tl.grid import grid, labelled
from covid_tl.preprocess.pipeline import Box, Prepared

TILE = 192


def _fit(image: np.ndarray, tile: int = TILE) -> np.ndarray:
    """RGB image letterboxed into a tile x tile square."""
    h, w = image.shape[:2]
    scale = tile / max(h, w)
    resized = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((tile, tile, 3), np.uint8)
    y, x = (tile - resized.shape[0]) // 2, (tile - resized.shape[1]) // 2
    canvas[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
    return canvas


def panels(original: np.ndarray, prepared: Prepared, marks: np.ndarray | None) -> list[np.ndarray]:
    """[original with crop box, marks in red, result] as RGB tiles."""
    rgb = np.repeat(original[:, :, None], 3, axis=2)
    boxed = rgb.copy()
    y0, x0, y1, x1 = prepared.box
    thickness = max(1, min(original.shape) // 150)
    cv2.rectangle(boxed, (x0, y0), (x1 - 1, y1 - 1), (0, 255, 0), thickness)
    marked = rgb.copy()
    if marks is not None:
        grown = cv2.dilate(marks.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=thickness) > 0
        marked[grown] = (255, 0, 0)
    result = np.repeat(prepared.image[:, :, None], 3, axis=2)
    return [_fit(boxed), _fit(marked), _fit(result)]


def marks_in_original(original: np.ndarray, box: Box, detector) -> np.ndarray:
    """The detector's marks inside the crop box, on the original image's grid."""
    y0, x0, y1, x1 = box
    full = np.zeros(original.shape, bool)
    full[y0:y1, x0:x1] = detector(original[y0:y1, x0:x1])
    return full


def preview_grid(rows: Sequence[list[np.ndarray]], captions: Sequence[str], per_row: int = 2) -> np.ndarray:
    """Triplets of panels, `per_row` images per grid row, each captioned."""
    triplets = [labelled(np.hstack(p), [c]) for p, c in zip(rows, captions)]
    return grid(triplets, columns=per_row)


def main(argv: Sequence[str] | None = None) -> int:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from covid_tl.explain.callback import balanced_rows
    from covid_tl.models.spec import InputSpec
    from covid_tl.preprocess.marks import detect_marks
    from covid_tl.training import build_datamodule

    argv = list(sys.argv[1:] if argv is None else argv)
    own = {k: v for k, v in (a.split("=", 1) for a in argv if a.split("=", 1)[0] in ("n", "out"))}
    overrides = [a for a in argv if a.split("=", 1)[0] not in ("n", "out")]
    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(str(conf), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    net = type("Net", (), {"input_spec": InputSpec(size=64)})
    datamodule = build_datamodule(cfg, net)
    datamodule.setup()
    manifest = datamodule.manifest
    n = int(own.get("n", 16))
    inpaint = OmegaConf.to_container(cfg.preprocessing, resolve=True).get("inpaint") or {}
    detector = lambda image: detect_marks(image, inpaint.get("detector"))  # noqa: E731
    tiles, captions = [], []
    for i in balanced_rows(manifest.targets, n):
        row = manifest.frame.iloc[i].to_dict()
        original = datamodule.load_image(row)
        prepared = datamodule.prepared(row)
        tiles.append(panels(original, prepared, marks_in_original(original, prepared.box, detector)))
        captions.append(f"{row['label']} | {Path(str(row['path'])).name[:40]}")
    out = Path(own.get("out", "preview.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), preview_grid(tiles, captions)[:, :, ::-1])
    print(f"wrote {out}: {len(tiles)} images (original + crop box | detected marks | result)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
