"""TensorFlow Serving's configuration, and a local stand-in for its server.

Production runs ``tensorflow_model_server`` with ``models.config`` and
``batching.config`` from this folder. ``python -m serving`` starts a local
server that answers the same gRPC API from the same files for machines
where TensorFlow Serving cannot be installed; see ``README.md`` for what it
does not implement.
"""
