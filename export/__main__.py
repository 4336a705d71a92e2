"""Command line: ``python -m export [--weights ...] [--base-path ...]``."""

import argparse
import functools
import logging
import pathlib
import sys

from deepclassify import contract
from export import precision as precision_lib
from export import weights as weights_lib

DEFAULT_BASE_PATH = pathlib.Path("models") / contract.MODEL_NAME


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="Export Keras InceptionV3 as a TensorFlow Serving model version.",
    )
    parser.add_argument(
        "--weights",
        default=weights_lib.AUTO,
        help="auto (default: ImageNet if it can be had, else random), imagenet, "
        "random, or the path of a local .h5 weights file",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of random weights (default 0)"
    )
    parser.add_argument(
        "--base-path",
        type=pathlib.Path,
        default=DEFAULT_BASE_PATH,
        help=f"the model's base folder (default {DEFAULT_BASE_PATH})",
    )
    parser.add_argument(
        "--version", type=int, help="version number (default: the next free one)"
    )
    parser.add_argument(
        "--precision",
        choices=precision_lib.PRECISIONS,
        default=precision_lib.FP32,
        help="fp32 (default), or bf16 for CPUs with AVX-512 bf16 or AMX; "
        "recorded in the version's info file",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )

    # Imported late so that --help answers without loading TensorFlow.
    from export import savedmodel

    try:
        model, origin = precision_lib.build_model(
            functools.partial(weights_lib.build_model, args.weights, seed=args.seed),
            args.precision,
        )
    except weights_lib.WeightsUnavailable as error:
        parser.exit(2, f"export: {error}\n")

    details = {"seed": args.seed} if origin == contract.WEIGHTS_RANDOM else {}
    details["precision"] = args.precision
    try:
        target = savedmodel.write_version(
            model, origin, args.base_path, version=args.version, details=details
        )
    except FileExistsError as error:
        parser.exit(2, f"export: {error}\n")
    print(target)

    return 0


if __name__ == "__main__":
    sys.exit(main())
