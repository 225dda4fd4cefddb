"""The names of what a model calls: the two classes, by class index (COVID-19 is the positive
class, index 1: sensitivity is recall on COVID-19, specificity recall on no finding), and the
findings a task=pretrain model calls. Names, not data: the models and the data both read them."""
from __future__ import annotations

LABELS: tuple[str, str] = ("no_finding", "covid")
POSITIVE = "covid"

#: How the labels are printed on figures.
DISPLAY = {"no_finding": "no finding", "covid": "COVID-19"}

#: The 14 findings of ChestX-ray14, in the order of its paper: the outputs of a task=pretrain model
#: (covid_tl.models.findings) and the columns of its data (covid_tl.data.findings).
NIH_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
