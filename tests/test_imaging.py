"""Every variant of a photo decodes to the pixels of its upright RGB self."""

import io

import numpy as np
import pytest
from PIL import Image

from gateway.errors import CorruptImage, PayloadTooLarge
from gateway.imaging import decode_image

MAX_PIXELS = 50_000_000


@pytest.fixture(scope="module")
def chelsea(photo_dir):
    with Image.open(photo_dir / "chelsea.png") as image:
        return image.convert("RGB")


def encode(image, image_format, **options):
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def decoded(data):
    return decode_image(data, MAX_PIXELS).pixels.astype(np.int16)


def test_rgb_png_is_resized_to_the_model_input(chelsea):
    result = decode_image(encode(chelsea, "PNG"), MAX_PIXELS)

    assert result.pixels.shape == (299, 299, 3)
    assert result.pixels.dtype == np.uint8
    assert (result.width, result.height, result.format) == (451, 300, "PNG")
    expected = np.asarray(chelsea.resize((299, 299), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(result.pixels, expected)


def test_grey_photo_becomes_three_equal_channels(chelsea):
    grey = chelsea.convert("L")

    pixels = decoded(encode(grey, "PNG"))

    expected = np.asarray(grey.resize((299, 299), Image.Resampling.BILINEAR))
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], expected)


def test_opaque_rgba_equals_rgb(chelsea):
    rgba = chelsea.copy()
    rgba.putalpha(255)

    np.testing.assert_array_equal(
        decoded(encode(rgba, "PNG")), decoded(encode(chelsea, "PNG"))
    )


def test_transparency_is_composited_on_white(chelsea):
    rgba = chelsea.copy()
    rgba.putalpha(0)

    assert (decoded(encode(rgba, "PNG")) == 255).all()


def test_cmyk_tiff_equals_rgb(chelsea):
    cmyk = chelsea.convert("CMYK")

    np.testing.assert_array_equal(
        decoded(encode(cmyk, "TIFF")), decoded(encode(chelsea, "PNG"))
    )


def test_cmyk_jpeg_is_rgb_within_jpeg_noise(chelsea):
    rgb_jpeg = decoded(encode(chelsea, "JPEG", quality=95))
    cmyk_jpeg = decoded(encode(chelsea.convert("CMYK"), "JPEG", quality=95))

    assert np.abs(cmyk_jpeg - rgb_jpeg).mean() < 2.0


@pytest.mark.parametrize(
    ("orientation", "stored_as"),
    [
        (2, [Image.Transpose.FLIP_LEFT_RIGHT]),
        (3, [Image.Transpose.ROTATE_180]),
        (4, [Image.Transpose.FLIP_TOP_BOTTOM]),
        (5, [Image.Transpose.TRANSPOSE]),
        (6, [Image.Transpose.ROTATE_90]),
        (7, [Image.Transpose.TRANSVERSE]),
        (8, [Image.Transpose.ROTATE_270]),
    ],
)
def test_exif_orientation_is_applied(chelsea, orientation, stored_as):
    stored = chelsea
    for step in stored_as:
        stored = stored.transpose(step)
    exif = Image.Exif()
    exif[0x0112] = orientation

    pixels = decoded(encode(stored, "PNG", exif=exif))

    np.testing.assert_array_equal(pixels, decoded(encode(chelsea, "PNG")))


def test_sixteen_bit_grey_is_scaled_not_clipped(chelsea):
    grey = np.asarray(chelsea.convert("L"), dtype=np.uint16) * 257
    image = Image.fromarray(grey)

    pixels = decoded(encode(image, "PNG"))

    expected = np.asarray(
        chelsea.convert("L").resize((299, 299), Image.Resampling.BILINEAR)
    )
    assert np.abs(pixels[..., 0] - expected).max() <= 1


def test_truncated_png_is_422(chelsea):
    data = encode(chelsea, "PNG")

    with pytest.raises(CorruptImage):
        decode_image(data[: len(data) // 2], MAX_PIXELS)


def test_header_claiming_huge_size_is_refused_before_decoding():
    # A valid PNG header declaring 30000x30000 pixels, with no pixel data.
    import struct
    import zlib

    def chunk(kind, payload):
        body = kind + payload
        return (
            struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))
        )

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
    )

    with pytest.raises(PayloadTooLarge, match="at most 50,000,000"):
        decode_image(data, MAX_PIXELS)
