"""A corpus of files a user may send, made here from real photos.

Each case is built from scikit-image's photos by the test itself (every
accepted format and mode, the eight EXIF orientations, damaged files,
bombs, wrong names and things that are not images), sent to the real
gateway under gunicorn, and checked against its exact expected answer.
No case may answer 5xx. The orientation cases must give the classes of
the upright photo: their logits are compared with Keras run in-process on
the stored pixels turned upright here, by the transposition each EXIF
value names (not by Pillow's ``exif_transpose``, which the gateway uses).
"""

import dataclasses
import gzip
import io
import struct
import warnings
import zipfile
import zlib

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import keras_logits, logits_match, top_ids_match

pytestmark = pytest.mark.e2e

ACCEPTED = "expected a JPEG, PNG, GIF, WebP, BMP or TIFF image"
ORIENTATION = 0x0112
# How each EXIF orientation is stored: the transposition that turns the
# upright photo into the stored pixels (the inverse of what viewers do).
STORED_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
# What a viewer does to show each stored orientation upright.
UPRIGHT_BY = {
    orientation: {
        Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
        Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
    }.get(stored, stored)
    for orientation, stored in STORED_AS.items()
}


@dataclasses.dataclass
class Case:
    """One file, how it is sent, and the answer it must get."""

    data: bytes
    filename: str
    status: int
    detail: str = ""
    image_format: str = ""
    size: tuple = ()
    upright: Image.Image = None
    content_type: str = "application/octet-stream"


def encode(image, image_format, **options):
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def png_chunk(kind, payload):
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_from_rows(width, height, bit_depth, colour_type, rows):
    """A PNG written by hand, for what Pillow cannot save (16-bit RGB)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"".join(b"\0" + row for row in rows)))
        + png_chunk(b"IEND", b"")
    )


def png_bomb(width, height):
    """A valid PNG of zeros: tiny compressed, ``width x height`` decoded."""
    row = b"\0" + b"\0" * width
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height))
    data += compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", data)
        + png_chunk(b"IEND", b"")
    )


def gif_header_bomb():
    """A GIF whose screen and first frame claim 65535x65535 pixels."""
    screen = struct.pack("<HHBBB", 65535, 65535, 0, 0, 0)
    frame = b"," + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0)
    return b"GIF89a" + screen + frame + b"\x08\x02\x4c\x01\x00;"


def with_exif(image, orientation):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    stored = (
        image
        if STORED_AS[orientation] is None
        else image.transpose(STORED_AS[orientation])
    )
    return encode(stored, "JPEG", quality=95, subsampling=0, exif=exif.tobytes())


def with_malformed_exif(image):
    """A JPEG whose APP1 block says Exif but holds a broken TIFF header."""
    data = encode(image, "JPEG", quality=95, subsampling=0)
    payload = b"Exif\0\0MM\0*\xff\xff\xff\xf0garbage"
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + segment + data[2:]


def without_exif(data):
    """The pixels of a JPEG as stored; Pillow warns of its broken EXIF."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return Image.open(io.BytesIO(data)).convert("RGB")


def build_corpus(photo_dir):
    """Returns ``{name: Case}``, every file made from the photos."""
    with Image.open(photo_dir / "chelsea.png") as image:
        chelsea = image.convert("RGB")
    with Image.open(photo_dir / "coffee.png") as image:
        coffee = image.convert("RGB")
    with Image.open(photo_dir / "astronaut.png") as image:
        astronaut = image.convert("RGB")
    rocket = (photo_dir / "rocket.jpg").read_bytes()
    grey = chelsea.convert("L")
    rgba = chelsea.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(chelsea.size))
    palette = chelsea.quantize(64)
    pixels16 = np.asarray(chelsea, dtype=np.uint16) * 257
    grey16 = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)
    jpeg = encode(chelsea, "JPEG", quality=90)
    png = encode(chelsea, "PNG")
    size = chelsea.size
    frames = [chelsea.quantize(128), coffee.resize(size).quantize(128)]
    animated = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])

    ok = {
        "jpeg-baseline": (jpeg, "JPEG", size),
        "jpeg-progressive": (
            encode(chelsea, "JPEG", quality=90, progressive=True),
            "JPEG",
            size,
        ),
        "jpeg-cmyk": (encode(chelsea.convert("CMYK"), "JPEG"), "JPEG", size),
        "jpeg-grey": (encode(grey, "JPEG"), "JPEG", size),
        "jpeg-real-photo": (rocket, "JPEG", (640, 427)),
        "jpeg-large-draft": (
            encode(astronaut.resize((2048, 2048)), "JPEG", quality=85),
            "JPEG",
            (2048, 2048),
        ),
        "png-rgb-8bit": (png, "PNG", size),
        "png-rgb-16bit": (
            png_from_rows(
                size[0],
                size[1],
                16,
                2,
                [row.astype(">u2").tobytes() for row in pixels16],
            ),
            "PNG",
            size,
        ),
        "png-grey-8bit": (encode(grey, "PNG"), "PNG", size),
        "png-grey-16bit": (encode(grey16, "PNG"), "PNG", size),
        "png-palette": (encode(palette, "PNG"), "PNG", size),
        "png-palette-transparency": (
            encode(palette, "PNG", transparency=0),
            "PNG",
            size,
        ),
        "png-rgba": (encode(rgba, "PNG"), "PNG", size),
        "png-grey-alpha": (encode(grey.convert("LA"), "PNG"), "PNG", size),
        "png-one-pixel": (encode(chelsea.resize((1, 1)), "PNG"), "PNG", (1, 1)),
        "gif-animated": (animated, "GIF", size),
        "webp-lossy": (encode(chelsea, "WEBP", quality=80), "WEBP", size),
        "webp-lossless-alpha": (encode(rgba, "WEBP", lossless=True), "WEBP", size),
        "bmp": (encode(chelsea, "BMP"), "BMP", size),
        "tiff-raw": (encode(chelsea, "TIFF"), "TIFF", size),
        "tiff-lzw": (encode(chelsea, "TIFF", compression="tiff_lzw"), "TIFF", size),
        "tiff-cmyk": (encode(chelsea.convert("CMYK"), "TIFF"), "TIFF", size),
        "png-named-jpg": (png, "PNG", size),
        "jpeg-named-gif": (jpeg, "JPEG", size),
    }
    cases = {
        name: Case(data, name + ".img", 200, image_format=fmt, size=dims)
        for name, (data, fmt, dims) in ok.items()
    }
    cases["png-named-jpg"].filename = "photo.jpg"
    cases["png-named-jpg"].content_type = "image/jpeg"
    cases["jpeg-named-gif"].filename = "photo.gif"
    cases["jpeg-named-gif"].content_type = "image/gif"
    cases["gif-animated"].upright = Image.open(io.BytesIO(animated)).convert("RGB")

    for orientation in STORED_AS:
        data = with_exif(chelsea, orientation)
        stored = Image.open(io.BytesIO(data)).convert("RGB")
        upright = stored
        if UPRIGHT_BY[orientation] is not None:
            upright = stored.transpose(UPRIGHT_BY[orientation])
        assert upright.size == chelsea.size
        cases[f"exif-orientation-{orientation}"] = Case(
            data,
            f"phone-{orientation}.jpg",
            200,
            image_format="JPEG",
            size=stored.size,
            upright=upright,
        )
    data = with_malformed_exif(chelsea)
    cases["exif-malformed"] = Case(
        data,
        "broken-exif.jpg",
        200,
        image_format="JPEG",
        size=size,
        upright=without_exif(data),
    )

    refused = {
        "empty": (
            b"",
            400,
            "the image is empty (0 bytes); send a JPEG, PNG, GIF, WebP, BMP or TIFF image",
        ),
        "jpeg-truncated": (
            jpeg[: len(jpeg) // 2],
            422,
            "the JPEG image cannot be decoded; it is truncated or corrupt "
            "(image file is truncated (26 bytes not processed))",
        ),
        "png-truncated": (
            png[: len(png) // 2],
            422,
            "the PNG image cannot be decoded; it is truncated or corrupt "
            "(image file is truncated)",
        ),
        "png-bad-header": (
            png[:16] + b"\0" * 17 + png[33:],
            422,
            "the data starts like a PNG image, but its header cannot be read; "
            "the file is damaged",
        ),
        "png-header-30000x30000": (
            png[:8]
            + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)),
            413,
            "the image declares too many pixels; at most 50,000,000 are accepted",
        ),
        "png-bomb-zeros": (
            png_bomb(10_000, 6_000),
            413,
            "the image is 10000x6000 = 60,000,000 pixels; at most 50,000,000 "
            "are accepted",
        ),
        "gif-header-bomb": (
            gif_header_bomb(),
            413,
            "the image declares too many pixels; at most 50,000,000 are accepted",
        ),
        "heic": (
            struct.pack(">I", 24) + b"ftypheic" + b"\0\0\0\0mif1heic" + jpeg[2:200],
            415,
            f"{ACCEPTED}; received a HEIC/AVIF image",
        ),
        "svg": (
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
            b'width="10" height="10"><rect width="10" height="10"/></svg>',
            415,
            f"{ACCEPTED}; received an SVG image",
        ),
        "pdf": (encode(chelsea, "PDF"), 415, f"{ACCEPTED}; received a PDF document"),
        "html-named-png": (
            b"<!DOCTYPE html><html><body><img src='cat.png'></body></html>",
            415,
            f"{ACCEPTED}; received an HTML page",
        ),
        "text": (b"a cat sitting on a mat\n", 415, f"{ACCEPTED}; received plain text"),
        "zip": (_zipped(png), 415, f"{ACCEPTED}; received a ZIP archive"),
        "gzip": (gzip.compress(png), 415, f"{ACCEPTED}; received a gzip archive"),
    }
    for name, (data, status, detail) in refused.items():
        cases[name] = Case(data, name + ".png", status, detail=detail)

    return cases


def _zipped(data):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("chelsea.png", data)
    return buffer.getvalue()


CASE_NAMES = [
    "jpeg-baseline", "jpeg-progressive", "jpeg-cmyk", "jpeg-grey",
    "jpeg-real-photo", "jpeg-large-draft", "png-rgb-8bit", "png-rgb-16bit",
    "png-grey-8bit", "png-grey-16bit", "png-palette", "png-palette-transparency",
    "png-rgba", "png-grey-alpha", "png-one-pixel", "gif-animated", "webp-lossy",
    "webp-lossless-alpha", "bmp", "tiff-raw", "tiff-lzw", "tiff-cmyk",
    "png-named-jpg", "jpeg-named-gif",
    *(f"exif-orientation-{o}" for o in range(1, 9)), "exif-malformed",
    "empty", "jpeg-truncated", "png-truncated", "png-bad-header",
    "png-header-30000x30000", "png-bomb-zeros", "gif-header-bomb", "heic", "svg",
    "pdf", "html-named-png", "text", "zip", "gzip",
]  # fmt: skip


@pytest.fixture(scope="module")
def corpus(photo_dir):
    cases = build_corpus(photo_dir)
    assert sorted(cases) == sorted(CASE_NAMES)
    return cases


@pytest.fixture(scope="module")
def upright_logits(keras_model):
    """Keras logits of an upright image, computed once per image."""
    found = {}

    def logits(image):
        key = id(image)
        if key not in found:
            pixels = np.asarray(image.resize((299, 299), Image.Resampling.BILINEAR))
            found[key] = keras_logits(keras_model, pixels)
        return found[key]

    return logits


def test_corpus_is_large_and_varied():
    assert len(CASE_NAMES) >= 30
    assert len(set(CASE_NAMES)) == len(CASE_NAMES)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_file_gets_its_answer(gateway_url, corpus, upright_logits, name):
    case = corpus[name]

    response = requests.post(
        gateway_url + "/api/v1/classify",
        files={"image": (case.filename, case.data, case.content_type)},
        data={"top_k": 10},
        timeout=60,
    )

    assert response.status_code == case.status, response.text
    body = response.json()
    if case.status != 200:
        assert response.headers["Content-Type"] == "application/problem+json"
        assert body == {
            "type": body["type"],
            "title": body["title"],
            "status": case.status,
            "detail": case.detail,
        }
        return
    assert (
        body["image"]["format"],
        body["image"]["width"],
        body["image"]["height"],
    ) == (
        case.image_format,
        *case.size,
    )
    if case.upright is not None:
        reference = upright_logits(case.upright)
        ids = [p["class_id"] for p in body["predictions"]]
        ok, ranks = top_ids_match(ids[:5], reference)
        assert ok, f"{name}: served top-5 disagrees at ranks {ranks}"
        served = np.array([p["logit"] for p in body["predictions"]])
        ok, worst = logits_match(served, reference[ids])
        assert ok, f"{name}: logits differ by {worst:.2e} x spread"
