"""Decodes an uploaded or fetched photo into the pixels the model takes.

The documented preprocessing, which tests reproduce independently:

1. identify the format from the bytes (never the name or declared type);
   JPEG, PNG, GIF, WebP, BMP and TIFF are accepted, anything else is 415;
2. check the pixel count from the header, before decoding anything;
3. for a JPEG, let the decoder downscale by 1/2, 1/4 or 1/8 while both
   sides stay at least 299 px (Pillow's draft mode), which makes large
   photos cheap to decode;
4. decode the first frame completely; a truncated or corrupt file is 422;
5. apply the EXIF orientation (a malformed EXIF block is ignored);
6. convert to RGB: transparency is composited on white, 16-bit samples are
   scaled to 8 bits (not clipped), CMYK and palettes are converted;
7. resize the whole image to 299x299 (no crop) with Pillow's bilinear
   filter, which widens its support when shrinking, so it averages over
   the source pixels instead of skipping them (antialiasing).
"""

import contextlib
import dataclasses
import io
import logging
import threading
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deepclassify import contract
from gateway.errors import BadRequest, CorruptImage, PayloadTooLarge, UnsupportedImage

log = logging.getLogger(__name__)

ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
ACCEPTED_DESCRIPTION = "a JPEG, PNG, GIF, WebP, BMP or TIFF image"
BACKGROUND = (255, 255, 255)
"""Colour under transparent pixels."""

RESAMPLE = Image.Resampling.BILINEAR
_WARNINGS_LOCK = threading.Lock()

# Leading bytes of common things that are not accepted images, so the 415
# answer can say what was received.
_SIGNATURES = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"\x89HDF", "an HDF5 file"),
)
# Leading bytes of the accepted formats: such data whose header Pillow
# cannot read is a damaged image (422), not an unsupported one (415).
_ACCEPTED_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    """The model's input and what the answer reports about the file."""

    pixels: np.ndarray
    width: int
    height: int
    format: str


def describe_bytes(data):
    """Names what some bytes look like, for an error message.

    Args:
        data: the start of a file.

    Returns:
        A short phrase such as ``"an HTML page"`` or ``"plain text"``.
    """
    head = data[:512]
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"avif"):
        return "a HEIC/AVIF image"

    try:
        text = head.decode("utf-8").lstrip().lower()
    except UnicodeDecodeError:
        return "unrecognised binary data"
    if "<svg" in text:
        return "an SVG image"
    if text.startswith(("<!doctype html", "<html")) or "<body" in text:
        return "an HTML page"
    if text.startswith(("{", "[")):
        return "JSON text"

    return "plain text"


def decode_image(data, max_pixels):
    """Turns the bytes of a photo into the model's 299x299 RGB input.

    Args:
        data: the file's bytes.
        max_pixels: the largest width x height accepted.

    Returns:
        A ``DecodedImage``; ``width`` and ``height`` are those of the file
        as stored (before orientation and downscaling).

    Raises:
        BadRequest: the data is empty.
        UnsupportedImage: the bytes are not an accepted image format.
        PayloadTooLarge: the header declares more than ``max_pixels``.
        CorruptImage: the file is truncated or cannot be decoded.
    """
    if not data:
        raise BadRequest(f"the image is empty (0 bytes); send {ACCEPTED_DESCRIPTION}")

    image = _open(data, max_pixels)
    width, height = image.size
    image_format = image.format

    if image_format == "JPEG":
        image.draft("RGB", (contract.IMAGE_SIZE, contract.IMAGE_SIZE))
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise CorruptImage(
            f"the {image_format} image cannot be decoded; it is truncated or "
            f"corrupt ({error})"
        ) from error

    image = _upright(image)
    try:
        rgb = _to_rgb(image)
    except (ValueError, OSError) as error:
        raise UnsupportedImage(
            f"the {image_format} image's colour mode {image.mode} cannot be "
            f"converted to RGB; send {ACCEPTED_DESCRIPTION} in RGB, grey, "
            f"palette or CMYK colours"
        ) from error
    resized = rgb.resize((contract.IMAGE_SIZE, contract.IMAGE_SIZE), RESAMPLE)

    return DecodedImage(
        pixels=np.asarray(resized, dtype=np.uint8),
        width=width,
        height=height,
        format=image_format,
    )


def _open(data, max_pixels):
    try:
        with _pillow_warnings_ignored():
            # Our own pixel limit below is the one that applies, and a
            # corrupt EXIF block Pillow warns about is ignored on purpose.
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as error:
        raise PayloadTooLarge(
            f"the image declares too many pixels; at most {max_pixels:,} are accepted"
        ) from error
    except UnidentifiedImageError as error:
        claimed = _claimed_format(data)
        if claimed:
            raise CorruptImage(
                f"the data starts like a {claimed} image, but its header cannot "
                f"be read; the file is damaged"
            ) from error
        raise UnsupportedImage(
            f"expected {ACCEPTED_DESCRIPTION}; received {describe_bytes(data)}"
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise CorruptImage(f"the image header cannot be read ({error})") from error

    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"the image is {width}x{height} = {width * height:,} pixels; at most "
            f"{max_pixels:,} are accepted"
        )
    if width == 0 or height == 0:
        raise CorruptImage(f"the image is {width}x{height} pixels")

    return image


def _claimed_format(data):
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    for signature, name in _ACCEPTED_SIGNATURES:
        if data.startswith(signature):
            return name

    return None


@contextlib.contextmanager
def _pillow_warnings_ignored():
    # catch_warnings swaps the process-wide filter list; two threads of a
    # worker interleaving it could leave warnings ignored for good, so its
    # uses here take turns.
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _upright(image):
    try:
        with _pillow_warnings_ignored():
            # Pillow warns about a corrupt EXIF block it skips; so do we.
            return ImageOps.exif_transpose(image)
    except Exception as error:  # Malformed EXIF comes in many shapes.
        log.debug("EXIF orientation ignored: %r", error)
        return image


def _to_rgb(image):
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        samples = np.asarray(image, dtype=np.float64)
        if mode == "I" and samples.max(initial=0) <= 255:
            scaled = samples
        else:
            scaled = samples / 257.0  # 65535 -> 255
        grey = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
        return grey.convert("RGB")

    if mode == "F":
        grey = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8))
        return grey.convert("RGB")

    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")

    return image.convert("RGB")
