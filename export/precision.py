"""The numeric precision a model is exported in: fp32 or bf16.

``bf16`` builds the network under Keras' ``mixed_bfloat16`` policy: the
variables stay float32 (so the same weights load), each layer computes in
bfloat16, and a float32 layer on top turns the logits back to float32. The
exported signature keeps the contract of ``deepclassify.contract``: uint8
pixels in, float32 logits and probabilities out.

Note:
    bfloat16 is fast only on CPUs that compute it natively (``avx512_bf16``
    or ``amx_bf16`` in ``/proc/cpuinfo``). Elsewhere TensorFlow emulates it
    and the model is slower than in fp32; ``make bench`` reports both.
"""

import contextlib

FP32 = "fp32"
BF16 = "bf16"
PRECISIONS = (FP32, BF16)

_KERAS_POLICIES = {FP32: "float32", BF16: "mixed_bfloat16"}


@contextlib.contextmanager
def keras_policy(precision):
    """Sets Keras' global dtype policy for models built inside the block.

    Args:
        precision: ``"fp32"`` or ``"bf16"``.

    Raises:
        ValueError: the precision is not one of ``PRECISIONS``.
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)}; received {precision!r}"
        )
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(_KERAS_POLICIES[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def build_model(build, precision):
    """Builds a Keras model in ``precision`` with float32 logits out.

    Args:
        build: a function without arguments returning ``(model, origin)``,
            such as ``functools.partial(export.weights.build_model, ...)``.
        precision: ``"fp32"`` or ``"bf16"``.

    Returns:
        The ``(model, origin)`` pair of ``build``; in bf16 the model is
        wrapped so that its output is float32.

    Raises:
        ValueError: the precision is not one of ``PRECISIONS``.
    """
    import keras

    with keras_policy(precision):
        model, origin = build()
        if precision == FP32:
            return model, origin

        logits = keras.layers.Activation("linear", dtype="float32", name="logits")(
            model.output
        )

    return keras.Model(model.input, logits, name=model.name), origin
