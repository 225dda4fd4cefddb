"""Reading X-ray files into 8-bit single-channel arrays, and cheap checks before training.

Published sets mix 8- and 16-bit PNGs, RGB and RGBA screenshots, palette images, JPEGs and
DICOM. Everything becomes uint8 (H, W) here so the rest of covid-tl sees one kind of image.
"""
from __future__ import annotations

import glob
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, NamedTuple

import cv2
import numpy as np

from covid_tl.core.errors import ConfigError

DICOM_SUFFIXES = {".dcm", ".dicom"}
#: Suffixes of the image files a folder holds (a folder given as `images=`, published layouts).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom")

#: Films larger than this are refused from their header, before any decode. The largest real
#: chest films are about 4300 x 3500 px (15 MP: a 43 x 35 cm detector at 0.1 mm); 50 MP leaves
#: over 3x room, and decoding plus preprocessing one stays under about 1 GB (16-bit: 100 MB
#: decoded, 50 MB as uint8, a few float32 copies in preprocessing), where a 30000 x 30000 PNG of
#: under 1 MB took 11 GB. (OpenCV's own CV_IO_MAX_IMAGE_PIXELS, 2^30 = 1074 MP by default, is
#: far above this and is not relied on.)
MAX_MEGAPIXELS = 50.0
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
    """The files `images=` names, sorted: a glob's (`scans/*.png`, `scans/**/*` recursively;
    folders left out, broken links kept: the file check lists them as missing, with their
    target), or a folder's image files by suffix, not those of its subfolders (a dataset's
    folder holds lung masks beside its films: `<folder>/**/*` takes them all)."""
    folder = Path(pattern).expanduser()
    if folder.is_dir():
        paths = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
        if not paths:
            raise ConfigError(f"images={pattern!r} is a folder with no image file ({' '.join(IMAGE_SUFFIXES)}) "
                              f"directly in it; images='{pattern.rstrip('/')}/**/*' takes its subfolders' files too")
        return paths
    paths = [p for p in sorted(glob.glob(str(folder), recursive=True))
             if Path(p).is_file() or (Path(p).is_symlink() and not Path(p).exists())]
    if not paths:
        raise ConfigError(f"images={pattern!r} matches no file")
    return paths


class Header(NamedTuple):
    """What a file's header says about its pixels, read before any decode."""

    width: int
    height: int
    bits: int | None  # per sample, where the header says
    frames: int = 1

    @property
    def megapixels(self) -> float:
        return self.width * self.height * self.frames / 1e6


#: JPEG start-of-frame markers (SOF0-SOF15 but DHT, JPG and DAC), which hold the image size.
JPEG_FRAMES = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_header(handle: BinaryIO) -> Header | None:
    """Width, height and precision from the JPEG's frame header (SOFn), skipping the segments
    before it (EXIF and thumbnails included); None when the scan starts with no frame header."""
    handle.seek(2)
    while True:
        byte = handle.read(1)
        while byte and byte != b"\xff":  # extraneous bytes, which decoders skip too
            byte = handle.read(1)
        marker = handle.read(1)
        while marker == b"\xff":  # fill bytes
            marker = handle.read(1)
        if not marker or marker[0] in (0xD9, 0xDA):  # end of file, end of image, start of scan
            return None
        if marker[0] == 0x01 or 0xD0 <= marker[0] <= 0xD8:  # markers without a segment
            continue
        field = handle.read(2)
        if len(field) < 2:
            return None
        if marker[0] in JPEG_FRAMES:
            frame = handle.read(5)
            if len(frame) < 5:
                return None
            bits, height, width = struct.unpack(">BHH", frame)
            return Header(width, height, bits)
        handle.seek(struct.unpack(">H", field)[0] - 2, 1)


def _bmp_header(head: bytes) -> Header | None:
    if len(head) < 30:
        return None
    if struct.unpack("<I", head[14:18])[0] == 12:  # OS/2 core header
        width, height, _, bits = struct.unpack("<HHHH", head[18:26])
        return Header(width, height, bits)
    width, height, _, bits = struct.unpack("<iiHH", head[18:30])
    return Header(abs(width), abs(height), bits)  # a negative height is stored top-down


#: TIFF tags of the first image's size and depth, and the bytes of the field types they use.
TIFF_TAGS = {256: "width", 257: "height", 258: "bits"}
TIFF_TYPES = {3: "H", 4: "I"}


def _tiff_header(handle: BinaryIO, head: bytes) -> Header | None:
    """Width, height and bits of the first image of a classic TIFF (None for BigTIFF)."""
    order = "<" if head[:2] == b"II" else ">"
    if len(head) < 8 or struct.unpack(order + "H", head[2:4])[0] != 42:
        return None
    handle.seek(struct.unpack(order + "I", head[4:8])[0])
    count = handle.read(2)
    if len(count) < 2:
        return None
    entries = handle.read(12 * struct.unpack(order + "H", count)[0])
    found: dict[str, int] = {}
    for at in range(0, len(entries) - 11, 12):
        tag, kind, number = struct.unpack(order + "HHI", entries[at:at + 8])
        if tag in TIFF_TAGS and kind in TIFF_TYPES and number == 1:
            field = order + TIFF_TYPES[kind]
            found[TIFF_TAGS[tag]] = struct.unpack(field, entries[at + 8:at + 8 + struct.calcsize(field)])[0]
    if "width" not in found or "height" not in found:
        return None
    return Header(found["width"], found["height"], found.get("bits"))


def _dicom_header(path: Path) -> Header | None:
    """Rows, Columns, BitsAllocated and frames from the DICOM header (pydicom stops before
    the pixels); None without pydicom or when the header cannot be read (the decode says why)."""
    try:
        import pydicom
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        rows, columns = int(dataset.Rows), int(dataset.Columns)
    except Exception:  # no pydicom, or a damaged header: the decode pass names the problem
        return None
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    return Header(columns, rows, int(getattr(dataset, "BitsAllocated", 0)) or None, frames)


def read_header(path: str | Path) -> Header | None:
    """The size and depth a file's header gives (PNG, JPEG, BMP, TIFF, DICOM), reading only
    the header; None when it cannot be read from it."""
    path = Path(path)
    with path.open("rb") as handle:
        return _header(path, handle, handle.read(132))


def _header(path: Path, handle: BinaryIO, head: bytes) -> Header | None:
    """read_header of the open file `handle` whose first 132 bytes are `head`."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 26:
        width, height = struct.unpack(">II", head[16:24])
        return Header(width, height, head[24])
    if head.startswith(b"\xff\xd8"):
        return _jpeg_header(handle)
    if head[:2] == b"BM":
        return _bmp_header(head)
    if head[:2] in (b"II", b"MM"):
        return _tiff_header(handle, head)
    return _dicom_header(path) if _is_dicom(path, head) else None


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


def _missing(path: Path) -> str:
    if path.is_symlink():
        return f"missing (broken link to {os.readlink(path)})"
    return "missing"


def _size_problem(header: Header | None, max_megapixels: float, jpeg: bool) -> str | None:
    """Why the file is too large to decode, from its header (which a JPEG must have; other
    formats whose header says nothing are left to the decode)."""
    if header is None:
        return "corrupt (JPEG frame header missing)" if jpeg else None
    if header.megapixels > max_megapixels:
        frames = f" x {header.frames} frames" if header.frames > 1 else ""
        bits = f", {header.bits}-bit" if header.bits else ""
        return (f"too large ({header.width} x {header.height} px{frames}{bits}: {header.megapixels:.1f} MP, "
                f"over the {max_megapixels:g} MP limit, max_megapixels)")
    return None


def check_image_file(path: str | Path, max_megapixels: float = MAX_MEGAPIXELS) -> str | None:
    """Why this file cannot be used (missing, a broken link, empty, unreadable, corrupt, too
    large), or None.

    Reads only the first and last bytes and the header, so every listed file is checked in
    seconds and a film over `max_megapixels` is refused before any decode; it is the cheap first
    pass, and a file it passes may still not decode (validate.py decodes them).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return _missing(path)
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
            jpeg = head.startswith(b"\xff\xd8")
            if head.startswith(b"\x89PNG\r\n\x1a\n"):
                problem = _png_problem(head, tail)
            elif jpeg:
                problem = None if tail.rstrip(b"\x00").endswith(b"\xff\xd9") else "corrupt (JPEG truncated)"
            elif _is_dicom(path, head) or head[:2] in (b"BM", b"II", b"MM"):
                problem = None
            else:
                return "unreadable (not a PNG, JPEG, BMP, TIFF or DICOM file)"
            return problem or _size_problem(_header(path, handle, head), max_megapixels, jpeg)
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
