"""Measurements beside throughput: the machine, processes, bytes and decoding.

* the CPU model, core count and whether it computes bfloat16 natively;
* the resident memory of gunicorn's workers, and whether TensorFlow is
  mapped into them (``/proc/PID/maps``);
* the size of each ``PredictRequest`` the gateway sends, seen on the wire
  by a byte-counting gRPC proxy between the gateway and the model server;
* the time ``gateway.imaging.decode_image`` takes on a large JPEG.
"""

import io
import os
import pathlib
import statistics
import time
from concurrent import futures

from deepclassify import tfs_protos

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""``/proc/cpuinfo`` flags of CPUs that compute bfloat16 natively."""
PROXY_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest message the byte-counting proxy passes; the servers' own limit."""


def cpu_info(path="/proc/cpuinfo"):
    """Describes the CPU.

    Args:
        path: the cpuinfo file. Defaults to ``/proc/cpuinfo``.

    Returns:
        ``(model_name, cores, bf16_flags)``: the first ``model name``, the
        cores this process may use, and which of ``BF16_CPU_FLAGS`` are set.
    """
    model_name = "unknown"
    flags = set()
    for line in pathlib.Path(path).read_text().splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model_name == "unknown":
            model_name = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())

    cores = len(os.sched_getaffinity(0))

    return model_name, cores, [flag for flag in BF16_CPU_FLAGS if flag in flags]


def child_pids(parent):
    """Returns the pids of the processes whose parent is ``parent``."""
    children = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("PPid:") and int(line.split()[1]) == parent:
                children.append(int(entry.name))

    return sorted(children)


def resident_bytes(pid):
    """Returns the resident set size of a process (``VmRSS``), in bytes."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

    raise ValueError(f"process {pid} reports no VmRSS")


def maps_tensorflow(pid):
    """Tells whether any TensorFlow file is mapped into a process."""
    return "tensorflow" in pathlib.Path(f"/proc/{pid}/maps").read_text()


class ByteCountingProxy:
    """A gRPC proxy that forwards every call and records request sizes.

    Requests and answers pass as bytes, untouched; ``sizes`` collects
    ``(method, request_bytes)`` of each call.
    """

    def __init__(self, upstream):
        import grpc

        self.sizes = []
        options = [
            ("grpc.max_send_message_length", PROXY_MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", PROXY_MAX_MESSAGE_BYTES),
        ]
        self.upstream = grpc.insecure_channel(upstream, options=options)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4), options=options
        )
        self._server.add_generic_rpc_handlers([_Forwarder(self)])
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"

    def close(self):
        self._server.stop(None)
        self.upstream.close()


class _Forwarder:
    """The proxy's generic handler: any unary method, forwarded as bytes."""

    def __init__(self, proxy):
        self.proxy = proxy

    def service(self, handler_call_details):
        import grpc

        method = handler_call_details.method
        forward = self.proxy.upstream.unary_unary(method)

        def handle(request, context):
            self.proxy.sizes.append((method, len(request)))
            try:
                return forward(request, timeout=context.time_remaining())
            except grpc.RpcError as error:
                context.abort(error.code(), error.details())

        return grpc.unary_unary_rpc_method_handler(handle)


def predict_request_bytes(photos, model_server):
    """Measures the ``PredictRequest`` the gateway sends for each photo.

    The gateway app runs in this process, pointed at a byte-counting proxy
    in front of ``model_server``, and classifies each photo once.

    Args:
        photos: paths of the photos.
        model_server: the model server's gRPC target.

    Returns:
        ``{photo name: bytes of its PredictRequest}``.

    Raises:
        RuntimeError: the gateway did not answer 200.
    """
    from gateway import create_app

    proxy = ByteCountingProxy(model_server)
    try:
        client = create_app({"MODEL_SERVER": proxy.target}).test_client()
        sizes = {}
        for path in photos:
            proxy.sizes.clear()
            response = client.post(
                "/api/v1/classify",
                data={"image": (io.BytesIO(path.read_bytes()), path.name)},
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"gateway answered {response.status_code} for {path.name}: "
                    f"{response.get_data(as_text=True)[:200]}"
                )
            sizes[path.name] = sum(
                size
                for method, size in proxy.sizes
                if method == tfs_protos.PREDICT_METHOD
            )
    finally:
        proxy.close()

    return sizes


def large_jpeg(photo, size, quality=90):
    """Upscales a real photo to ``size`` and encodes it as a JPEG.

    Args:
        photo: path of the photo.
        size: ``(width, height)``.
        quality: JPEG quality. Defaults to 90.

    Returns:
        The JPEG's bytes.
    """
    from PIL import Image

    with Image.open(photo) as image:
        large = image.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    large.save(buffer, "JPEG", quality=quality)

    return buffer.getvalue()


def decode_milliseconds(data, repeats):
    """Times ``gateway.imaging.decode_image`` on some bytes.

    Args:
        data: the image file's bytes.
        repeats: timed decodes, after one untimed.

    Returns:
        ``(median, fastest)`` in milliseconds.
    """
    from gateway.config import DEFAULTS
    from gateway.imaging import decode_image

    max_pixels = DEFAULTS["MAX_IMAGE_PIXELS"]
    decode_image(data, max_pixels)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        decode_image(data, max_pixels)
        timings.append((time.perf_counter() - started) * 1000)

    return statistics.median(timings), min(timings)
