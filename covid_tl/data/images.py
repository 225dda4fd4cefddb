"""Reading X-ray files into 8-bit single-channel arrays, and cheap checks before training.

Published sets mix 8- and 16-bit PNGs, RGB and RGBA screenshots, palette images, JPEGs and
DICOM. Everything becomes uint8 (H, W) here so the rest of covid-tl sees one kind of image.
"""
from __future__ import annotations

import glob
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from covid_tl.errors import ConfigError

DICOM_SUFFIXES = {".dcm", ".dicom"}

#: Pixels converted to uint8 at a time: float32 blocks of 16 MB instead of a full-size copy.
CONVERT_BLOCK = 1 << 22


class ImageReadError(OSError):
    """A file that cannot be read as an image; the message names the file."""


def _is_dicom(path: Path, head: bytes) -> bool:
    return path.suffix.lower() in DICOM_SUFFIXES or head[128:132] == b"DICM"


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Any-depth, any-channel decoded image -> uint8 (H, W).

    Colour becomes luminance; alpha is dropped (X-ray screenshots carry it opaque); deeper
    than 8 bits is stretched from its own min-max, as most X-ray PNGs use 10-14 of 16 bits.
    """
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
        elif image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        else:
            image = image[:, :, 0]
    if image.dtype == np.uint8:
        return image
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros(image.shape, np.uint8)
    # Block by block in float32, so a 16-bit film costs its uint8 result and one 16 MB block
    # beyond its own pixels, not three float64 copies of it.
    out = np.empty(image.shape, np.uint8)
    rows = max(1, CONVERT_BLOCK // max(1, image[0].size))
    offset, scale = np.float32(low), np.float32(255 / (high - low))
    for start in range(0, image.shape[0], rows):
        block = image[start:start + rows].astype(np.float32)
        block -= offset
        block *= scale
        out[start:start + rows] = np.rint(block, out=block)
    return out


def read_dicom(path: Path) -> np.ndarray:
    """DICOM pixels with the modality and VOI LUTs (window) applied; MONOCHROME1 inverted."""
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:
        raise ImageReadError(
            f"{path} is DICOM, which needs pydicom: pip install 'covid-tl[dicom]' (or pip install pydicom)"
        ) from None
    try:
        dataset = pydicom.dcmread(path)
        pixels = apply_voi_lut(apply_modality_lut(dataset.pixel_array, dataset), dataset)
    except Exception as error:  # pydicom raises many types for damaged files
        raise ImageReadError(f"{path}: unreadable DICOM ({error})") from None
    image = to_uint8(np.asarray(pixels))
    if getattr(dataset, "PhotometricInterpretation", "") == "MONOCHROME1":
        image = 255 - image  # MONOCHROME1 stores bone dark; covid-tl wants bone bright
    return image


#: Any bit depth and colour layout, turned upright by the file's EXIF orientation as viewers do
#: (a phone photo of a film is stored sideways); IMREAD_UNCHANGED would ignore the orientation.
DECODE_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR


def read_xray(path: str | Path) -> np.ndarray:
    """uint8 (H, W) from a PNG, JPEG, BMP, TIFF or DICOM file, upright as an image viewer shows it."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # imdecode copes with non-ASCII paths, imread not
    except OSError as error:
        raise ImageReadError(f"{path}: {error.strerror or error}") from None
    if _is_dicom(path, data[:132].tobytes()):
        return read_dicom(path)
    image = cv2.imdecode(data, DECODE_FLAGS) if data.size else None
    if image is None:
        raise ImageReadError(f"{path}: not a readable image")
    return to_uint8(image)


def image_files(pattern: str) -> list[str]:
    """The files a glob names (`scans/*.png`, `scans/**/*` recursively), sorted; folders left out."""
    paths = [p for p in sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True)) if Path(p).is_file()]
    if not paths:
        raise ConfigError(f"images={pattern!r} matches no file")
    return paths


def _png_problem(head: bytes, tail: bytes) -> str | None:
    if len(head) < 33 or head[12:16] != b"IHDR":
        return "corrupt (PNG header damaged)"
    if zlib.crc32(head[12:29]) != struct.unpack(">I", head[29:33])[0]:
        return "corrupt (PNG header checksum wrong)"
    width, height = struct.unpack(">II", head[16:24])
    if width == 0 or height == 0:
        return "corrupt (PNG of zero size)"
    if tail[-8:-4] != b"IEND":
        return "corrupt (PNG truncated)"
    return None


def check_image_file(path: str | Path) -> str | None:
    """Why this file cannot be used (missing, empty, unreadable, corrupt), or None.

    Reads only the first and last bytes, so every listed file is checked in seconds; it is the
    cheap first pass, and a file it passes may still not decode (validate.py decodes them).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    if not path.is_file():
        return "unreadable (not a file)"
    if size == 0:
        return "empty"
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
            handle.seek(max(0, size - 12))
            tail = handle.read(12)
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_problem(head, tail)
    if head.startswith(b"\xff\xd8"):
        return None if tail.rstrip(b"\x00").endswith(b"\xff\xd9") else "corrupt (JPEG truncated)"
    if _is_dicom(path, head) or head[:2] in (b"BM", b"II", b"MM"):
        return None
    return "unreadable (not a PNG, JPEG, BMP, TIFF or DICOM file)"
