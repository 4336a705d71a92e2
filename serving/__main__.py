"""Starts the local model server: ``python -m serving [flags]``.

The flags carry ``tensorflow_model_server``'s names, so a command line
written for one works for the other where they overlap.
"""

import argparse
import logging
import signal
import sys
import threading
from concurrent import futures

import grpc

DEFAULT_PORT = 8500
DEFAULT_MODEL_CONFIG = "serving/models.config"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest request or response, in bytes: 64 MiB.

A 299x299 uint8 batch of 64 images is 17 MiB; encoded photos for the
``classify_images`` signature are smaller still. TensorFlow Serving itself
accepts up to 2 GiB; clients set their own limit to match this one.
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
        "--grpc_max_threads", type=int, default=32, help="concurrent calls served"
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

    return parser.parse_args(argv)


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
    from serving.service import DirectRunner, Models, ModelService, PredictionService

    tf.config.threading.set_intra_op_parallelism_threads(
        args.tensorflow_intra_op_parallelism
    )
    tf.config.threading.set_inter_op_parallelism_threads(
        args.tensorflow_inter_op_parallelism
    )

    try:
        configs = read_model_config(args.model_config_file)
    except ConfigError as error:
        log.error("%s", error)
        return 2
    stores = [ModelStore(config) for config in configs]
    models = Models(stores)
    runner = DirectRunner()
    if args.inject_delay_ms > 0:
        runner = DelayedRunner(runner, args.inject_delay_ms / 1000)

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.grpc_max_threads),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
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

    def poll_versions():
        while not stopping.is_set():
            for store in stores:
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
    log.info("stopped")

    return 0


if __name__ == "__main__":
    sys.exit(main())
