"""Reads TensorFlow Serving's model configuration file.

The file is a text ``ModelServerConfig`` exactly as ``tensorflow_model_server
--model_config_file`` reads it, parsed with the official message class.
"""

import pathlib

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2


class ConfigError(ValueError):
    """The model configuration file is missing or malformed."""


def read_model_config(path):
    """Parses a ``models.config`` file.

    Args:
        path: the file, as passed to ``--model_config_file``.

    Returns:
        The ``ModelConfig`` entries of its ``model_config_list``.

    Raises:
        ConfigError: the file cannot be read, does not parse, lists no
            model, or names a platform other than ``tensorflow``.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read model config {path}: {error}") from error

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ConfigError(f"{path} is not a ModelServerConfig: {error}") from error

    models = list(config.model_config_list.config)
    if not models:
        raise ConfigError(f"{path} lists no model in model_config_list")
    for model in models:
        if model.model_platform not in ("", "tensorflow"):
            raise ConfigError(
                f"model {model.name!r}: platform {model.model_platform!r} is not "
                f"served; expected 'tensorflow'"
            )

    return models
