"""Starts the local model server: ``python -m serving [flags]``.

The flags carry ``tensorflow_model_server``'s names, so a command line
written for one works for the other where they overlap: ``--port``,
``--model_config_file``, ``--model_config_file_poll_wait_seconds``,
``--file_system_poll_wait_seconds``,
``--enable_batching``, ``--batching_parameters_file``,
``--grpc_channel_arguments``, ``--grpc_max_threads`` and the TensorFlow
thread counts. ``--monitoring_config_file`` and ``--rest_api_port`` are
TensorFlow Serving's alone (see ``README.md``).
"""

import argparse
import logging
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

from deepclassify import contract

DEFAULT_PORT = 8500
DEFAULT_MODEL_CONFIG = "serving/models.config"
MAX_MESSAGE_BYTES = contract.GRPC_MAX_MESSAGE_BYTES
"""Largest request or response, in bytes (64 MiB) unless
``--grpc_channel_arguments`` sets ``grpc.max_receive_message_length`` or
``grpc.max_send_message_length``. A larger request is refused by gRPC with
``RESOURCE_EXHAUSTED`` before it reaches the model.
"""
GRACE_SECONDS = 10.0
"""On SIGTERM, how long calls in flight may take before they are cut.

New calls are refused at once (clients see ``UNAVAILABLE``); the process
exits as soon as the calls in flight are done, or the grace is over.
"""

log = logging.getLogger("serving")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description="Local model server speaking TensorFlow Serving's gRPC API.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--model_config_file", default=DEFAULT_MODEL_CONFIG)
    parser.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="how often the model folders are checked for new versions",
    )
    parser.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=float,
        default=0.0,
        help="how often the model config file is read again (labels, policies, "
        "models); 0 (default) reads it once",
    )
    parser.add_argument(
        "--grpc_max_threads", type=int, default=32, help="concurrent calls served"
    )
    parser.add_argument(
        "--grpc_channel_arguments",
        type=parse_channel_arguments,
        default=[],
        help="gRPC server arguments, key=value,key=value (numbers as integers); "
        f"by default the message size limits are {MAX_MESSAGE_BYTES} bytes",
    )
    parser.add_argument(
        "--enable_batching",
        type=parse_bool,
        nargs="?",
        const=True,
        default=False,
        help="batch concurrent Predict calls (see serving/batching.py)",
    )
    parser.add_argument(
        "--batching_parameters_file",
        default="",
        help="a text BatchingParameters file; TF Serving's defaults without one",
    )
    parser.add_argument(
        "--tensorflow_intra_op_parallelism",
        type=int,
        default=0,
        help="threads per TensorFlow op; 0 lets TensorFlow choose",
    )
    parser.add_argument(
        "--tensorflow_inter_op_parallelism",
        type=int,
        default=0,
        help="TensorFlow ops run at once; 0 lets TensorFlow choose",
    )
    parser.add_argument(
        "--inject_delay_ms",
        type=float,
        default=0.0,
        help="testing aid that TF Serving lacks: delay every Predict call by "
        "this many milliseconds (see serving/fault_injection.py)",
    )

    args = parser.parse_args(argv)
    if args.batching_parameters_file and not args.enable_batching:
        parser.error("--batching_parameters_file is set without --enable_batching")

    return args


def parse_bool(text):
    """Reads a flag value as tensorflow_model_server does: true or false."""
    if text.lower() in ("true", "1"):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false; received {text!r}")


def parse_channel_arguments(text):
    """Reads ``key=value,key=value`` into gRPC options; digits become ints."""
    options = []
    for item in filter(None, text.split(",")):
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise argparse.ArgumentTypeError(
                f"expected key=value pairs separated by commas; received {item!r}"
            )
        options.append((key.strip(), int(value) if value.isdigit() else value))

    return options


def reread_model_config(path, models):
    """Applies the model config file again; keeps the old one if it is bad."""
    from serving.config import ConfigError, read_model_config
    from serving.model_store import ModelStore

    try:
        configs = read_model_config(path)
    except ConfigError as error:
        log.error("keeping the previous model config: %s", error)
        return

    models.update(configs, ModelStore)


def make_runner(args):
    """Returns the Batcher the flags ask for, or a DirectRunner.

    Raises:
        serving.config.ConfigError: the batching file is unreadable or
            holds values out of range.
    """
    from serving.batching import Batcher, BatchingOptions
    from serving.config import read_batching_config
    from serving.service import DirectRunner

    if not args.enable_batching:
        return DirectRunner()

    if args.batching_parameters_file:
        parameters = read_batching_config(args.batching_parameters_file)
        options = BatchingOptions.from_parameters(parameters)
    else:
        options = BatchingOptions()
    log.info("batching on: %s", options)

    return Batcher(options)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    # TensorFlow is imported only now, so that --help is instant.
    import tensorflow as tf
    from tensorflow_serving.apis import (
        model_service_pb2_grpc,
        prediction_service_pb2_grpc,
    )

    from serving.config import ConfigError, read_model_config
    from serving.fault_injection import DelayedRunner
    from serving.model_store import ModelStore
    from serving.service import Models, ModelService, PredictionService

    tf.config.threading.set_intra_op_parallelism_threads(
        args.tensorflow_intra_op_parallelism
    )
    tf.config.threading.set_inter_op_parallelism_threads(
        args.tensorflow_inter_op_parallelism
    )

    try:
        configs = read_model_config(args.model_config_file)
        runner = make_runner(args)
    except ConfigError as error:
        log.error("%s", error)
        return 2
    stores = [ModelStore(config) for config in configs]
    models = Models(stores)
    if args.inject_delay_ms > 0:
        runner = DelayedRunner(runner, args.inject_delay_ms / 1000)

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.grpc_max_threads),
        options=list(
            {
                "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
                "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
                **dict(args.grpc_channel_arguments),
            }.items()
        ),
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(models, runner), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(models), server
    )
    address = f"{args.host}:{args.port}"
    if server.add_insecure_port(address) == 0:
        log.error("cannot listen on %s", address)
        return 1
    # Listen before loading, as TF Serving does: GetModelStatus answers
    # LOADING meanwhile, so readiness checks can tell loading from down.
    server.start()
    log.info("listening on %s", address)

    stopping = threading.Event()

    config_wait = args.model_config_file_poll_wait_seconds
    next_config_read = time.monotonic() + config_wait

    def poll_versions():
        nonlocal next_config_read
        while not stopping.is_set():
            if config_wait > 0 and time.monotonic() >= next_config_read:
                next_config_read = time.monotonic() + config_wait
                reread_model_config(args.model_config_file, models)
            for store in list(models.stores.values()):
                try:
                    store.refresh()
                except Exception:  # One bad poll must not end polling.
                    log.exception("refreshing %s failed", store.name)
            stopping.wait(args.file_system_poll_wait_seconds)

    poller = threading.Thread(target=poll_versions, name="version-poller", daemon=True)
    poller.start()

    def on_signal(signum, frame):
        log.info(
            "signal %d: finishing calls in flight (up to %.0f s)", signum, GRACE_SECONDS
        )
        stopping.set()
        server.stop(GRACE_SECONDS)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.wait_for_termination()
    runner.stop()
    log.info("stopped")

    return 0


if __name__ == "__main__":
    sys.exit(main())
