"""The two classes, by class index. COVID-19 is the positive class (index 1): sensitivity is
recall on COVID-19, specificity recall on no finding."""
from __future__ import annotations

LABELS: tuple[str, str] = ("no_finding", "covid")
POSITIVE = "covid"

#: How the labels are printed on figures.
DISPLAY = {"no_finding": "no finding", "covid": "COVID-19"}
