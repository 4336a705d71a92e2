"""Exports Keras InceptionV3 as a TensorFlow Serving model version.

Run ``python -m export --help``. The SavedModel keeps the contract in
``deepclassify.contract`` and is loaded as it is by TensorFlow Serving and
by the local model server in ``serving/``.
"""
