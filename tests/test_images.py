import cv2
import numpy as np
import pytest

from data_fixtures import write_dicom
from covid_tl.data.images import ImageReadError, check_image_file, read_xray

GRADIENT = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1))


def write(path, image, params=()):
    assert cv2.imwrite(str(path), image, list(params))
    return path


def test_8bit_grayscale_png_and_jpeg_read_as_is(tmp_path):
    assert np.array_equal(read_xray(write(tmp_path / "a.png", GRADIENT)), GRADIENT)
    jpeg = read_xray(write(tmp_path / "a.jpg", GRADIENT, [cv2.IMWRITE_JPEG_QUALITY, 100]))
    assert jpeg.dtype == np.uint8 and jpeg.shape == (24, 32) and np.abs(jpeg.astype(int) - GRADIENT).max() <= 3


def test_16bit_png_is_stretched_to_8bit(tmp_path):
    deep = (GRADIENT.astype(np.uint16) * 16 + 100)  # a 12-bit image inside 16 bits
    image = read_xray(write(tmp_path / "deep.png", deep))
    assert image.dtype == np.uint8 and image.min() == 0 and image.max() == 255
    assert np.all(np.diff(image[0].astype(int)) >= 0)


@pytest.mark.parametrize("orientation, marked", [(6, "top right"), (8, "bottom left")])
def test_jpeg_exif_orientation_turns_the_image_upright_as_viewers_do(tmp_path, orientation, marked):
    """Stored 40x60 with a white block at its top left. EXIF 6: the stored top row is the
    viewer's right side and the stored left column its top, so the block shows top right;
    EXIF 8: stored top row on the left, left column at the bottom, block bottom left."""
    pil = pytest.importorskip("PIL.Image", reason="Pillow writes the EXIF tag")
    stored = np.zeros((40, 60), np.uint8)
    stored[:10, :10] = 255
    picture = pil.fromarray(stored)
    exif = picture.getexif()
    exif[0x0112] = orientation
    picture.save(tmp_path / "film.jpg", exif=exif, quality=95)
    image = read_xray(tmp_path / "film.jpg")
    assert image.shape == (60, 40)
    corners = {"top left": image[:10, :10], "top right": image[:10, -10:],
               "bottom left": image[-10:, :10], "bottom right": image[-10:, -10:]}
    assert {name for name, block in corners.items() if block.mean() > 200} == {marked}


def test_rgb_rgba_and_palette_become_single_channel(tmp_path):
    rgb = np.dstack([GRADIENT] * 3)
    rgba = np.dstack([GRADIENT] * 3 + [np.full_like(GRADIENT, 255)])
    assert np.array_equal(read_xray(write(tmp_path / "rgb.png", rgb)), GRADIENT)
    assert np.array_equal(read_xray(write(tmp_path / "rgba.png", rgba)), GRADIENT)
    pil = pytest.importorskip("PIL.Image", reason="Pillow writes the palette PNG")
    pil.fromarray(GRADIENT).convert("P").save(tmp_path / "palette.png")
    palette = read_xray(tmp_path / "palette.png")
    assert palette.shape == GRADIENT.shape and np.abs(palette.astype(int) - GRADIENT).max() <= 8


def test_dicom_monochrome1_is_inverted_and_window_applied(tmp_path):
    pixels = (GRADIENT.astype(np.uint16) * 16)
    normal = read_xray(write_dicom(tmp_path / "a.dcm", pixels))
    inverted = read_xray(write_dicom(tmp_path / "b.dcm", pixels, "MONOCHROME1"))
    assert normal[0, 0] < normal[0, -1] and np.array_equal(inverted, 255 - normal)
    windowed = read_xray(write_dicom(tmp_path / "c.dcm", pixels, window=(2048, 1024)))
    # Everything below 1536 is black and above 2560 white under that window.
    assert windowed[0, 0] == 0 and windowed[0, -1] == 255 and (windowed[0] == 0).sum() > 5


def test_dicom_without_pydicom_says_how_to_get_it(tmp_path, without_pydicom):
    path = tmp_path / "x.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    with pytest.raises(ImageReadError, match="pip install pydicom"):
        read_xray(path)


def test_check_image_file_names_each_kind_of_bad_file(tmp_path):
    good = write(tmp_path / "good.png", GRADIENT)
    data = good.read_bytes()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello, not an image")
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    broken = bytearray(data)
    broken[20] ^= 0xFF  # inside IHDR: checksum no longer matches
    (tmp_path / "crc.png").write_bytes(bytes(broken))
    jpeg = write(tmp_path / "good.jpg", GRADIENT).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[:-40])
    assert check_image_file(good) is None
    assert check_image_file(tmp_path / "good.jpg") is None
    assert check_image_file(tmp_path / "nope.png") == "missing"
    assert check_image_file(tmp_path / "empty.png") == "empty"
    assert check_image_file(tmp_path / "text.png").startswith("unreadable")
    assert check_image_file(tmp_path / "cut.png") == "corrupt (PNG truncated)"
    assert check_image_file(tmp_path / "crc.png") == "corrupt (PNG header checksum wrong)"
    assert check_image_file(tmp_path / "cut.jpg") == "corrupt (JPEG truncated)"
    with pytest.raises(ImageReadError, match="text.png"):
        read_xray(tmp_path / "text.png")
