"""``python -m export --precision``: a bf16 export keeps the model contract.

The bf16 version must take uint8 pixels and answer float32 logits like the
fp32 one, say its precision in the info file, and compute close to Keras'
fp32 model, but not identically (which would mean bf16 was not applied).
"""

import json
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from deepclassify import contract
from tests.conftest import SEED, keras_logits, logits_match, reference_pixels
from tools import stack

BF16_TOLERANCE = 0.2
"""Largest bf16 logit error, in units of the logits' spread.

bfloat16 keeps 8 significant bits, so through InceptionV3's 94 layers the
logits move by a few hundredths of their spread (0.03 measured on
scikit-image's photos); 0.2 leaves room while still catching a wrong model.
"""
FP32_TOLERANCE = 1e-3
"""The fp32 tolerance of the other tests; bf16 must exceed it."""


@pytest.fixture(scope="module")
def bf16_base(tmp_path_factory, log_dir):
    """A model folder with one bf16 version (random weights, seed 0)."""
    base = tmp_path_factory.mktemp("bf16") / "inception_v3"
    stack.export_model(
        base,
        log_dir / "export-bf16.log",
        "--precision",
        "bf16",
        "--weights",
        "random",
        "--seed",
        str(SEED),
    )
    return base


def info(base):
    return json.loads((base / "1" / contract.MODEL_INFO_FILE).read_text())


def test_info_file_records_the_precision(bf16_base, model_base):
    assert info(bf16_base)["precision"] == "bf16"
    assert info(bf16_base)["weights"] == "random"
    assert info(model_base)["precision"] == "fp32"


def test_bf16_signature_keeps_the_contract(bf16_base):
    signature = tf.saved_model.load(str(bf16_base / "1")).signatures[
        contract.SERVING_SIGNATURE
    ]

    _, inputs = signature.structured_input_signature
    assert {key: spec.dtype for key, spec in inputs.items()} == {
        contract.INPUT_IMAGES: tf.uint8
    }
    assert {key: spec.dtype for key, spec in signature.structured_outputs.items()} == {
        contract.OUTPUT_LOGITS: tf.float32,
        contract.OUTPUT_PROBABILITIES: tf.float32,
        contract.OUTPUT_WEIGHTS: tf.string,
    }


def test_bf16_logits_are_close_to_fp32_keras(bf16_base, keras_model, photos):
    signature = tf.saved_model.load(str(bf16_base / "1")).signatures[
        contract.SERVING_SIGNATURE
    ]

    for name, path in photos.items():
        pixels = reference_pixels(path)
        served = signature(images=tf.constant(pixels[np.newaxis]))
        logits = served[contract.OUTPUT_LOGITS].numpy()[0]
        reference = keras_logits(keras_model, pixels)

        close, worst = logits_match(logits, reference, tolerance=BF16_TOLERANCE)
        assert close, f"{name}: bf16 logits differ by {worst:.3f} x spread"
        assert worst > FP32_TOLERANCE, f"{name}: identical to fp32, bf16 not applied"
        assert served[contract.OUTPUT_WEIGHTS].numpy().tolist() == [b"random"]


def test_unknown_precision_is_refused():
    result = subprocess.run(
        [str(stack.MODEL_PYTHON), "-m", "export", "--precision", "fp16"],
        cwd=stack.ROOT,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 2
    assert "argument --precision: invalid choice: 'fp16'" in result.stderr
