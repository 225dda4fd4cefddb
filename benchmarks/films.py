"""Synthetic NIH-like films on disk, for throughput benchmarks: phantoms rendered at a small
size, upscaled to `size` px with film grain, written as 8-bit PNGs with a manifest.csv
(path,label,patient_id), so decoding costs what a ChestX-ray14 PNG costs."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from covid_tl.data.synthetic.source import SyntheticSource


def render_films(directory: Path, n: int, size: int = 1024, seed: int = 0) -> Path:
    """Write `n` films (or keep those already there) and return the manifest's path."""
    manifest = directory / "manifest.csv"
    if manifest.is_file() and len(pd.read_csv(manifest)) == n:
        return manifest
    directory.mkdir(parents=True, exist_ok=True)
    source = SyntheticSource(n_patients=n, images_per_patient=(1, 1), image_size=min(size, 256), seed=seed)
    rng = np.random.default_rng(seed)
    grain = rng.normal(0, 6, (2 * size, 2 * size)).astype(np.float32)  # film grain: PNGs as large as real ones
    rows = []
    for row in source.frame().to_dict("records"):
        index = len(rows)
        image = source.load_image(row)
        image = image if image.ndim == 2 else image[..., 0]
        film = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        y, x = rng.integers(0, size, 2)
        film += grain[y:y + size, x:x + size]  # a different window per film: every file differs
        path = directory / f"{index:06d}.png"
        cv2.imwrite(str(path), np.clip(film, 0, 255).astype(np.uint8))
        rows.append({"path": path.name, "label": row["label"], "patient_id": f"p{index}"})
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest
