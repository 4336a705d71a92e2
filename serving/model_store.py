"""Finds, loads and unloads the versions of one model, as TF Serving does.

A model's versions are the numbered folders under its ``base_path``. The
``model_version_policy`` decides which of them are served (the newest N,
all, or a given list); the store polls the folder, loads versions that
enter the policy and unloads those that leave it, without a restart. Each
version goes through the states TensorFlow Serving reports:
``START -> LOADING -> AVAILABLE -> UNLOADING -> END``.

A version is ``LOADING`` while its SavedModel loads and its warmup requests
(``assets.extra/tf_serving_warmup_requests``, as TensorFlow Serving reads
them) are replayed; a version whose load or warmup fails ends in ``END``
with the error, reported by ``GetModelStatus``.

The store's config may be replaced while serving (``reconfigure``, when
the server re-reads ``models.config``). Version labels (``version_labels``
in ``models.config``) are resolved at each request: a label naming a
version that is not ``AVAILABLE`` answers ``NOT_FOUND``. TensorFlow
Serving instead refuses such a config unless it runs with
``--allow_version_labels_for_unavailable_models``.
"""

import dataclasses
import logging
import pathlib
import threading
import time

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_status_pb2, prediction_log_pb2

from deepclassify import contract
from serving.errors import ServableNotFound

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State

DEFAULT_SIGNATURE = "serving_default"
MAX_WARMUP_RECORDS = 1000
"""Most warmup records replayed, TensorFlow Serving's own limit."""


@dataclasses.dataclass
class ModelVersion:
    """One version folder and, once loaded, its callable signatures."""

    version: int
    path: pathlib.Path
    state: int = State.START
    error: str = ""
    signatures: dict = dataclasses.field(default_factory=dict)
    signature_defs: dict = dataclasses.field(default_factory=dict)
    loaded_model: object = None

    def load(self):
        """Loads the SavedModel; sets the state to AVAILABLE or END."""
        self.state = State.LOADING
        started = time.monotonic()
        try:
            meta_graph = _read_meta_graph(self.path)
            self.loaded_model = tf.saved_model.load(str(self.path))
            self.signatures = dict(self.loaded_model.signatures)
            self.signature_defs = dict(meta_graph.signature_def)
            replayed = self._replay_warmup()
        except Exception as error:  # A broken folder must not stop the server.
            self.signatures = {}
            self.loaded_model = None
            self.state = State.END
            self.error = f"{type(error).__name__}: {error}"
            log.error(
                "cannot load version %d from %s: %s", self.version, self.path, error
            )
            return

        self.state = State.AVAILABLE
        log.info(
            "version %d AVAILABLE in %.1f s (signatures: %s; %d warmup requests)",
            self.version,
            time.monotonic() - started,
            ", ".join(sorted(self.signatures)),
            replayed,
        )

    def run(self, signature_name, inputs):
        """Runs one signature once.

        Args:
            signature_name: a signature of this version.
            inputs: ``{input key: NumPy array}``, every key of the
                signature.

        Returns:
            ``{output key: NumPy array}`` for every output of the signature.

        Raises:
            tf.errors.InvalidArgumentError: the graph refused the inputs
                (an image that cannot be decoded, for instance).
            ServableNotFound: the version was unloaded meanwhile (a call
                that waited for a batch, for instance).
        """
        function = self.signatures.get(signature_name)
        if function is None:
            raise ServableNotFound(
                f"Servable not found: version {self.version} has been unloaded"
            )
        outputs = function(**{key: tf.constant(value) for key, value in inputs.items()})

        return {name: tensor.numpy() for name, tensor in outputs.items()}

    def _replay_warmup(self):
        """Runs the version's warmup requests; returns how many ran.

        Raises:
            ValueError: the file holds too many records, or a request names
                an unknown signature.
            tf.errors.OpError: the file is not a TFRecord file, or a
                request fails.
        """
        path = self.path / contract.WARMUP_FILE
        if not path.is_file():
            return 0

        replayed = 0
        for number, record in enumerate(tf.data.TFRecordDataset(str(path))):
            if number >= MAX_WARMUP_RECORDS:
                raise ValueError(
                    f"{path} holds more than {MAX_WARMUP_RECORDS} warmup records"
                )
            entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            kind = entry.WhichOneof("log_type")
            if kind != "predict_log":
                # Classify, Regress and MultiInference are not served here.
                log.warning("warmup record %d: %s is not replayed", number, kind)
                continue
            request = entry.predict_log.request
            signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            if signature_name not in self.signatures:
                raise ValueError(
                    f"warmup record {number} names signature {signature_name!r}; "
                    f"this version has {', '.join(sorted(self.signatures))}"
                )
            inputs = {
                key: tf.make_ndarray(proto) for key, proto in request.inputs.items()
            }
            self.run(signature_name, inputs)
            replayed += 1

        return replayed

    def unload(self):
        """Drops the loaded model; sets the state to END."""
        self.state = State.UNLOADING
        self.signatures = {}
        self.loaded_model = None
        self.state = State.END
        log.info("version %d unloaded", self.version)


def _read_meta_graph(path):
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((path / "saved_model.pb").read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ValueError(f"{path} has no MetaGraph tagged 'serve'")


def list_version_folders(base_path):
    """Returns ``{version: path}`` for the numbered folders of a model."""
    base_path = pathlib.Path(base_path)
    if not base_path.is_dir():
        return {}

    return {
        int(entry.name): entry
        for entry in base_path.iterdir()
        if entry.name.isdigit() and (entry / "saved_model.pb").is_file()
    }


def select_versions(available, policy):
    """Applies a ``ServableVersionPolicy`` to the versions on disk.

    Args:
        available: the version numbers found on disk.
        policy: the model's ``model_version_policy`` message.

    Returns:
        The set of versions to serve.
    """
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return set(available)
    if which == "specific":
        return set(policy.specific.versions) & set(available)

    count = policy.latest.num_versions if which == "latest" else 1

    return set(sorted(available)[-max(count, 1) :])


class ModelStore:
    """The versions of one configured model, kept in line with its folder."""

    def __init__(self, model_config):
        self.config = model_config
        self.name = model_config.name
        self.base_path = pathlib.Path(model_config.base_path)
        self._versions = {}
        self._lock = threading.Lock()

    def refresh(self):
        """Loads versions that entered the policy, unloads those that left."""
        on_disk = list_version_folders(self.base_path)
        wanted = select_versions(on_disk, self.config.model_version_policy)
        if not on_disk:
            log.warning("no version folder under %s yet", self.base_path)

        for number in sorted(wanted):
            known = self._versions.get(number)
            # A version that failed stays failed; one unloaded may come back.
            if known is not None and (known.state != State.END or known.error):
                continue
            version = ModelVersion(number, on_disk[number])
            with self._lock:
                self._versions[number] = version
            version.load()

        for number, version in list(self._versions.items()):
            if number not in wanted and version.state == State.AVAILABLE:
                version.unload()

    def reconfigure(self, model_config):
        """Takes a new policy and labels; the next ``refresh`` applies them."""
        if model_config != self.config:
            log.info("model %s: new config %s", self.name, model_config)
        self.config = model_config
        self.base_path = pathlib.Path(model_config.base_path)

    def unload_all(self):
        """Unloads every version, for a model removed from the config."""
        for version in list(self._versions.values()):
            if version.state == State.AVAILABLE:
                version.unload()

    def resolve(self, model_spec):
        """Finds the loaded version a ``ModelSpec`` asks for.

        Args:
            model_spec: the request's spec; ``version``, ``version_label``
                or neither (the newest available version).

        Returns:
            The ``ModelVersion``.

        Raises:
            ServableNotFound: no AVAILABLE version matches.
        """
        available = {
            number: version
            for number, version in self._versions.items()
            if version.state == State.AVAILABLE
        }
        choice = model_spec.WhichOneof("version_choice")
        if choice == "version_label":
            label = model_spec.version_label
            if label not in self.config.version_labels:
                raise ServableNotFound(f"Unrecognized servable version label: {label}")
            number = self.config.version_labels[label]
        elif choice == "version":
            number = model_spec.version.value
        else:
            if not available:
                raise ServableNotFound(
                    f"Servable not found for request: Latest({self.name})"
                )
            number = max(available)

        if number not in available:
            raise ServableNotFound(
                f"Servable not found for request: Specific({self.name}, {number})"
            )

        return available[number]

    def statuses(self, version=None):
        """Returns ``(version, state, error)`` for the versions known."""
        with self._lock:
            versions = sorted(self._versions.values(), key=lambda v: v.version)

        return [
            (v.version, v.state, v.error)
            for v in versions
            if version is None or v.version == version
        ]
