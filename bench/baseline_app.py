"""The baseline the benchmark compares with: Flask calling Keras in-process.

The design many projects start with, written here for the benchmark only:
one Flask app that builds the Keras model once and, per request, decodes
the upload with Pillow, resizes it, and calls ``model.predict`` on a batch
of one. ``bench.run`` serves it with gunicorn, one sync worker, so requests
are handled one at a time as with ``flask run`` without threads.

Settings come from the environment, read when the app is built:
``BENCH_BASELINE_WEIGHTS`` (default ``random``) and ``BENCH_BASELINE_SEED``
(default 0) name the same weights as the exported model's.
"""

import io
import os

import flask
import numpy as np
from PIL import Image

TOP_K = 5


def create_app():
    """Builds the app and its Keras InceptionV3 (fp32, logits out)."""
    import keras

    from export.weights import build_model

    model, origin = build_model(
        os.environ.get("BENCH_BASELINE_WEIGHTS", "random"),
        seed=int(os.environ.get("BENCH_BASELINE_SEED", "0")),
    )
    size = model.input_shape[1]
    app = flask.Flask(__name__)

    @app.post("/api/v1/classify")
    def classify():
        """Classifies the uploaded ``image`` and answers its top classes."""
        upload = flask.request.files.get("image")
        if upload is None:
            return {"error": "send the photo as the multipart field 'image'"}, 400

        image = Image.open(io.BytesIO(upload.read())).convert("RGB")
        pixels = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))
        batch = keras.applications.inception_v3.preprocess_input(
            pixels[np.newaxis].astype(np.float32)
        )
        logits = model.predict(batch, verbose=0)[0]
        best = np.argsort(-logits)[:TOP_K]

        return {
            "predictions": [
                {"class_id": int(index), "logit": float(logits[index])}
                for index in best
            ],
            "weights": origin,
        }

    @app.get("/healthz")
    def healthz():
        """Answers 200 once the model is built."""
        return {"status": "ok"}

    return app
