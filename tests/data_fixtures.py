"""Tiny datasets in the published layouts, written into a temporary folder by the tests."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest


def image(path: Path, seed: int = 0, size: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)
    return path


def cohen(root: Path, patient_column: str = "patientid", with_folder: bool = True) -> Path:
    """Cohen's metadata.csv: COVID-19 in two finding spellings, other findings, views, a CT."""
    rows = [
        # patient, finding, view, modality, filename
        ("1", "COVID-19", "PA", "X-ray", "c1a.jpg"),
        ("1", "COVID-19", "PA", "X-ray", "c1b.jpg"),
        ("2", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "c2.png"),
        ("3", "COVID-19, ARDS", "PA", "X-ray", "c3.png"),
        ("4", "COVID-19", "AP", "X-ray", "c4.png"),
        ("5", "COVID-19", "AP Supine", "X-ray", "c5.png"),
        ("6", "COVID-19", "PA", "CT", "c6.png"),
        ("7", "Pneumonia/Bacterial/Streptococcus", "PA", "X-ray", "c7.png"),
        ("8", "No Finding", "PA", "X-ray", "c8.png"),
    ]
    records = []
    for i, (pid, finding, view, modality, name) in enumerate(rows):
        image(root / "images" / name, seed=i)
        record = {patient_column: pid, "offset": "", "sex": "M", "age": "50", "finding": finding,
                  "view": view, "modality": modality, "filename": name, "doi": "", "license": ""}
        if with_folder:
            record["folder"] = "images"
        records.append(record)
    pd.DataFrame(records).to_csv(root / "metadata.csv", index=False)
    return root


def nih(root: Path, n_patients: int = 30, per_patient: int = 2) -> Path:
    """Data_Entry_2017.csv with images spread over images_001/images and images_002/images."""
    rows = []
    for p in range(1, n_patients + 1):
        for k in range(per_patient):
            name = f"{p:08d}_{k:03d}.png"
            folder = root / f"images_{1 + p % 2:03d}" / "images"
            finding = "No Finding" if p % 5 else "Effusion|No Finding"
            view = "PA" if (p + k) % 7 else "AP"
            image(folder / name, seed=p * 10 + k)
            rows.append({"Image Index": name, "Finding Labels": finding, "Follow-up #": k,
                         "Patient ID": str(p), "Patient Age": 40, "Patient Gender": "F", "View Position": view})
    pd.DataFrame(rows).to_csv(root / "Data_Entry_2017.csv", index=False)
    return root


def write_dicom(path, pixels, photometric="MONOCHROME2", window=None, shape=None):
    """A 12-bit DX DICOM of `pixels`; `shape` (rows, columns) makes its header claim another size."""
    pytest.importorskip("pydicom", reason="DICOM support needs pydicom (test extra)")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality, ds.PhotometricInterpretation = "DX", photometric
    ds.Rows, ds.Columns = shape or pixels.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path
