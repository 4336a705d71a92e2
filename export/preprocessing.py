"""Decodes and resizes encoded image files inside the TensorFlow graph.

The ``classify_images`` signature runs this on every element of its
``image_bytes`` input, so that a client sends files as they are:

1. ``tf.io.decode_image`` identifies JPEG, PNG, GIF or BMP from the bytes
   and decodes the first frame (``expand_animations=False``) to 3 channels:
   grey is repeated, an alpha channel is dropped (not composited on white,
   as the gateway does), 16-bit samples are scaled to 8 bits;
2. ``tf.image.resize`` shrinks or stretches the whole image to 299x299 (no
   crop) with the bilinear filter and ``antialias=True``: when shrinking,
   the triangle filter widens with the scale factor and averages over all
   the source pixels it covers;
3. the result is rounded to uint8 pixels, exactly what ``serving_default``
   takes, so both signatures share the rest of the graph.

The gateway's Pillow path (``gateway/imaging.py``) uses Pillow's BILINEAR
filter, which is the same widened triangle filter when shrinking; the two
differ by rounding and by the JPEG decoders' IDCT, about one level on
average on real photos (``tests/test_classify_images.py`` holds them to 1.5
levels). The gateway also applies the EXIF orientation and decodes large
JPEGs at a reduced DCT scale; this graph does neither.
"""

import tensorflow as tf

from deepclassify import contract


def decode_and_resize(image_file):
    """Turns one encoded image file into the model's 299x299 RGB pixels.

    Args:
        image_file: a scalar string tensor holding a JPEG, PNG, GIF or BMP
            file.

    Returns:
        A uint8 tensor ``[299, 299, 3]``.

    Raises:
        tf.errors.InvalidArgumentError: when run on bytes that are not an
            image of those formats, or are truncated.
    """
    image = tf.io.decode_image(
        image_file, channels=contract.CHANNELS, expand_animations=False
    )
    image.set_shape([None, None, contract.CHANNELS])

    resized = tf.image.resize(
        image,
        [contract.IMAGE_SIZE, contract.IMAGE_SIZE],
        method=tf.image.ResizeMethod.BILINEAR,
        antialias=True,
    )

    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def decode_batch(image_files):
    """Applies ``decode_and_resize`` to each element of a string ``[batch]``.

    Returns:
        A uint8 tensor ``[batch, 299, 299, 3]``.
    """
    return tf.map_fn(
        decode_and_resize,
        image_files,
        fn_output_signature=tf.TensorSpec(
            [contract.IMAGE_SIZE, contract.IMAGE_SIZE, contract.CHANNELS], tf.uint8
        ),
    )
