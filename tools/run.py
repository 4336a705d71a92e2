"""``make run``: the model server and the gateway on loopback, until Ctrl-C.

Exports a model first when ``models/inception_v3`` has no version. Logs go
to ``build/logs/``; the address to open is printed once both are ready.
"""

import argparse
import signal
import subprocess
import sys
import time

from tools import stack

LOG_DIR = stack.ROOT / "build" / "logs"
MODEL_BASE = stack.ROOT / "models" / "inception_v3"


def ensure_model():
    """Exports a first version when none exists."""
    if any(MODEL_BASE.glob("*/saved_model.pb")):
        return
    print("No model version yet: exporting InceptionV3 (about a minute)...", flush=True)
    subprocess.run(
        [str(stack.MODEL_PYTHON), "-m", "export"], cwd=stack.ROOT, check=True
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="gateway HTTP port")
    parser.add_argument("--grpc-port", type=int, default=8500, help="model server port")
    args = parser.parse_args(argv)

    ensure_model()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    model_server = stack.start_model_server(
        args.grpc_port,
        "serving/models.config",
        LOG_DIR / "model-server.log",
        extra_args=stack.MODEL_SERVER_ARGS,
    )
    gateway = stack.start_gateway(
        args.port, f"127.0.0.1:{args.grpc_port}", LOG_DIR / "gateway.log"
    )
    processes = [model_server, gateway]

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        stack.wait_for_http(
            f"http://127.0.0.1:{args.port}/readyz", gateway, timeout=180
        )
        model = stack.wait_for_http(
            f"http://127.0.0.1:{args.port}/api/v1/model", gateway
        )
        print(
            f"\nDeepClassify is ready: http://127.0.0.1:{args.port}/\n"
            f"  model {model['name']} version {model['version']}, "
            f"weights: {model['weights']}\n"
            f"  gRPC model server: 127.0.0.1:{args.grpc_port}\n"
            f"  logs: {LOG_DIR.relative_to(stack.ROOT)}/\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        while not stopping and all(process.alive() for process in processes):
            time.sleep(0.5)
        for process in processes:
            if not process.alive():
                print(f"{process.name} exited:\n{process.log_tail()}", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        pass
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        print("Stopping...", flush=True)
        for process in reversed(processes):
            process.stop()

    return 0


if __name__ == "__main__":
    sys.exit(main())
