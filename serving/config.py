"""Reads TensorFlow Serving's configuration files.

Each file is a text protobuf exactly as ``tensorflow_model_server`` reads
it: ``--model_config_file`` (``ModelServerConfig``, the official message
class), ``--batching_parameters_file`` (``BatchingParameters``) and
``--monitoring_config_file`` (``MonitoringConfig``).
"""

import pathlib

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.server_config_protos import message_classes


class ConfigError(ValueError):
    """The model configuration file is missing or malformed."""


def _parse_text(path, message):
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error}") from error
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise ConfigError(
            f"{path} is not a {message.DESCRIPTOR.name}: {error}"
        ) from error

    return message


def read_batching_config(path):
    """Parses a ``batching.config`` file into ``BatchingParameters``.

    Raises:
        ConfigError: the file cannot be read or does not parse.
    """
    batching_class, _ = message_classes()
    return _parse_text(path, batching_class())


def read_monitoring_config(path):
    """Parses a ``monitoring.config`` file into ``MonitoringConfig``.

    Raises:
        ConfigError: the file cannot be read or does not parse.
    """
    _, monitoring_class = message_classes()
    return _parse_text(path, monitoring_class())


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
    config = _parse_text(path, model_server_config_pb2.ModelServerConfig())

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
