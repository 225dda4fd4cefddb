"""What the run trains and tests on: images and patients per split x label x source x view, and
per split x label x view (where one class is mostly AP films, the view can stand in for it)."""
from __future__ import annotations

from typing import Any

import pandas as pd

KEYS = ["split", "label", "source", "view"]


def data_summary(frame: pd.DataFrame, skipped: int = 0) -> dict[str, Any]:
    """JSON-ready counts from a table with the manifest columns plus `split`."""
    order = list(dict.fromkeys(["train", "val", "test", *frame["split"]]))  # splits, then extra sets
    frame = frame.fillna({"view": ""}).assign(split=pd.Categorical(frame["split"], categories=order))
    groups = frame.groupby(KEYS, sort=True, observed=True)
    rows = [
        {**dict(zip(KEYS, key)), "images": int(len(g)), "patients": int(g["patient_id"].nunique())}
        for key, g in groups
    ]
    totals = {
        split: {label: int(n) for label, n in g["label"].value_counts().sort_index().items()}
        for split, g in frame.groupby("split", sort=True, observed=True)
    }
    views: dict[str, dict[str, dict[str, int]]] = {}
    for (split, label, view), n in frame.groupby(["split", "label", "view"], sort=True, observed=True).size().items():
        views.setdefault(split, {}).setdefault(label, {})[view or "-"] = int(n)
    return {"rows": rows, "images_per_split_and_label": totals, "images_per_split_label_and_view": views,
            "images": int(len(frame)),
            "patients": int(frame["patient_id"].nunique()), "skipped": skipped}
