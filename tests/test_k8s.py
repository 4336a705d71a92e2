"""The container images and the Kubernetes manifests, checked offline.

No cluster and no Docker engine exist where the tests run, so the files
are checked by every offline means there is: the API schemas of two
Kubernetes releases (``kubernetes-validate``, strict), ``yamllint``,
``hadolint``, TF Serving's own config messages, and our own rules over the
parsed objects, which no schema knows (selectors that select, ports that
exist, budgets that allow a drain).
"""

import copy
import json
import pathlib
import re
import shlex
import subprocess
import sys
import sysconfig

import kubernetes_validate
import pytest
import yaml

from deepclassify import contract
from gateway.config import DEFAULTS, ENV_PREFIX, load_config
from serving.config import (
    read_batching_config,
    read_model_config,
    read_monitoring_config,
)
from tools import stack
from tools.stack import ROOT

K8S = ROOT / "k8s"
CANARY = K8S / "canary"
KUBERNETES_VERSIONS = ("1.36.0", "1.37.0")
"""Two current releases, both shipped by the pinned kubernetes-validate."""
KUSTOMIZATION = "kustomization.yaml"
"""Read by ``kubectl apply -k``, never applied: the one file not validated."""
DOCKERFILES = (ROOT / "serving" / "Dockerfile", ROOT / "gateway" / "Dockerfile")
CONFIG_MAP = "model-server-config"
CONFIG_FILES = {
    "models.config": ROOT / "serving" / "models.container.config",
    "batching.config": ROOT / "serving" / "batching.config",
    "monitoring.config": ROOT / "serving" / "monitoring.config",
}
"""Each ConfigMap key and the file the model-server image bakes in."""
MODEL_SERVER_FILE_FLAGS = {
    "--model_config_file": "models.config",
    "--batching_parameters_file": "batching.config",
    "--monitoring_config_file": "monitoring.config",
}


def manifest_files(folder=K8S):
    """Every manifest under ``folder``, canary included."""
    return sorted(path for path in folder.rglob("*.yaml") if path.name != KUSTOMIZATION)


def load_documents(path):
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def resources(files):
    return [doc for path in files for doc in load_documents(path)]


def kustomized_files(folder):
    """The files a kustomization lists, as paths."""
    kustomization = load_documents(folder / KUSTOMIZATION)[0]
    return sorted(folder / name for name in kustomization["resources"])


BASE = resources(kustomized_files(K8S))
"""What ``kubectl apply -k k8s/`` applies."""
ALL = resources(manifest_files())
"""The base and the canary."""


def of_kind(kind, objects=ALL):
    return [doc for doc in objects if doc["kind"] == kind]


def named(kind, name, objects=ALL):
    (found,) = [
        doc for doc in of_kind(kind, objects) if doc["metadata"]["name"] == name
    ]
    return found


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def selected_deployments(selector, objects=ALL):
    return [
        deployment
        for deployment in of_kind("Deployment", objects)
        if selects(selector, deployment["spec"]["template"]["metadata"]["labels"])
    ]


def containers(deployment):
    return deployment["spec"]["template"]["spec"]["containers"]


def all_containers(objects=ALL):
    return [
        (deployment["metadata"]["name"], container)
        for deployment in of_kind("Deployment", objects)
        for container in containers(deployment)
    ]


def flag_values(args):
    return dict(arg.split("=", 1) for arg in args if "=" in arg)


def dockerfile_instructions(path):
    """``[(INSTRUCTION, arguments)]`` with continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def model_server_image_args():
    """The model server image's CMD, the flags it starts with."""
    (cmd,) = [
        rest
        for word, rest in dockerfile_instructions(ROOT / "serving" / "Dockerfile")
        if word == "CMD"
    ]
    return json.loads(cmd)


def resource_id(doc):
    return f"{doc['kind']}/{doc['metadata']['name']}"


def test_kustomizations_list_every_manifest():
    canary = set(manifest_files(CANARY))

    assert set(kustomized_files(K8S)) == set(manifest_files()) - canary
    assert set(kustomized_files(CANARY)) == canary


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("resource", ALL, ids=resource_id)
def test_manifest_matches_the_kubernetes_schema(resource, version):
    # validate() raises SchemaNotFoundError for an unknown kind or API
    # version, where the command line only warns: here it fails the test.
    validated = kubernetes_validate.validate(resource, version, strict=True)

    assert validated == version.rsplit(".", 1)[0]


def test_a_missing_schema_is_a_failure():
    resource = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}}

    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(resource, KUBERNETES_VERSIONS[0], strict=True)


def test_strict_validation_rejects_an_unknown_field():
    service = dict(named("Service", "gateway"))
    service["spec"] = {**service["spec"], "selectorr": {"a": "b"}}

    with pytest.raises(kubernetes_validate.ValidationError, match="selectorr"):
        kubernetes_validate.validate(service, KUBERNETES_VERSIONS[0], strict=True)


def test_yamllint_passes():
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-f", "parsable", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_passes(dockerfile):
    hadolint = pathlib.Path(sysconfig.get_path("scripts")) / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_config_map_holds_the_images_config_files():
    data = named("ConfigMap", CONFIG_MAP)["data"]

    assert set(data) == set(CONFIG_FILES)
    for key, path in CONFIG_FILES.items():
        assert data[key] == path.read_text(), (
            f"k8s/model-server-config.yaml {key} differs from "
            f"{path.relative_to(ROOT)}; copy the file into the ConfigMap"
        )


def test_config_map_files_parse_as_tf_serving_messages(tmp_path):
    data = named("ConfigMap", CONFIG_MAP)["data"]
    for key, text in data.items():
        (tmp_path / key).write_text(text)

    (model,) = read_model_config(tmp_path / "models.config")
    batching = read_batching_config(tmp_path / "batching.config")
    monitoring = read_monitoring_config(tmp_path / "monitoring.config")

    # The local server's model, at the absolute path TF Serving requires.
    (local,) = read_model_config(ROOT / "serving" / "models.config")
    assert model.base_path == "/models/inception_v3"
    local.base_path = model.base_path
    assert model == local
    assert model.name == contract.MODEL_NAME
    assert batching == read_batching_config(ROOT / "serving" / "batching.config")
    assert batching.max_batch_size.value >= 1
    assert monitoring.prometheus_config.enable is True


def test_service_selectors_match_pods():
    for service in of_kind("Service"):
        selector = service["spec"]["selector"]

        assert selected_deployments(selector, BASE), resource_id(service)


def test_deployment_selectors_match_their_own_pods():
    for deployment in of_kind("Deployment"):
        spec = deployment["spec"]

        assert selects(
            spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"]
        ), resource_id(deployment)


def test_service_target_ports_name_container_ports():
    for service in of_kind("Service"):
        pods = selected_deployments(service["spec"]["selector"])
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert isinstance(target, str), f"{resource_id(service)}: name the port"
            for deployment in pods:
                names = {
                    entry["name"]
                    for container in containers(deployment)
                    for entry in container.get("ports", [])
                }
                assert target in names, f"{resource_id(service)} -> {target}"


def test_ingress_backends_are_service_ports():
    for ingress in of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = named("Service", backend["name"])
                port_names = {port["name"] for port in service["spec"]["ports"]}

                assert backend["port"]["name"] in port_names


def test_hpas_target_deployments_with_cpu_requests():
    hpas = of_kind("HorizontalPodAutoscaler")
    assert {hpa["metadata"]["name"] for hpa in hpas} == {"model-server", "gateway"}

    for hpa in hpas:
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
        deployment = named("Deployment", target["name"], BASE)
        for container in containers(deployment):
            assert container["resources"]["requests"]["cpu"], target["name"]
        metrics = hpa["spec"]["metrics"]
        assert [m["resource"]["name"] for m in metrics] == ["cpu"]


def minimum_replicas(deployment):
    """The fewest pods a Deployment runs: its HPA's minimum, or replicas."""
    for hpa in of_kind("HorizontalPodAutoscaler", BASE):
        if hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]:
            return hpa["spec"]["minReplicas"]
    return deployment["spec"].get("replicas", 1)


def test_pdbs_allow_a_disruption_at_the_minimum_replica_count():
    for pdb in of_kind("PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        pods = sum(map(minimum_replicas, selected_deployments(selector, BASE)))
        spec = pdb["spec"]
        limit = spec.get("maxUnavailable", pods - spec.get("minAvailable", pods))

        assert isinstance(limit, int), f"{resource_id(pdb)}: a count, not a percent"
        assert pods >= 2, resource_id(pdb)
        assert 1 <= limit < pods, resource_id(pdb)


def image_references():
    """Every image named anywhere: manifests, Dockerfiles, compose."""
    images = [container["image"] for _, container in all_containers()]
    for path in DOCKERFILES:
        images += [
            rest for word, rest in dockerfile_instructions(path) if word == "FROM"
        ]
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    images += [service["image"] for service in compose["services"].values()]
    for folder in (K8S, CANARY):
        kustomization = load_documents(folder / KUSTOMIZATION)[0]
        images += [
            f"{entry['name']}:{entry['newTag']}" for entry in kustomization["images"]
        ]
    return images


def test_no_image_is_latest_or_untagged():
    images = image_references()

    assert len(images) >= 8
    for image in images:
        name = image.split("@")[0]
        tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else ""
        assert tag and tag != "latest", image


def test_every_container_has_probes_and_a_locked_down_security_context():
    for deployment in of_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        writable = {
            volume["name"] for volume in pod.get("volumes", []) if "emptyDir" in volume
        }
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["automountServiceAccountToken"] is False

        for container in pod["containers"]:
            name = f"{resource_id(deployment)}/{container['name']}"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in container, f"{name} has no {probe}"
            assert container["readinessProbe"] != container["livenessProbe"], name
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context.get("privileged", False) is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in context["capabilities"], name
            (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp["name"] in writable, f"{name}: /tmp is not an emptyDir"
            assert set(container["resources"]["limits"]) == {"cpu", "memory"}


def test_model_server_readiness_waits_for_an_available_model():
    for deployment in selected_deployments({"app.kubernetes.io/name": "model-server"}):
        (container,) = containers(deployment)
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}

        # TF Serving's status URL answers 200 while LOADING; metadata does not.
        metadata = f"/v1/models/{contract.MODEL_NAME}/metadata"
        assert container["readinessProbe"]["httpGet"]["path"] == metadata
        assert container["startupProbe"]["httpGet"]["path"] == metadata
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
        assert container["livenessProbe"] == {
            "tcpSocket": {"port": "grpc"},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        }
        assert ports == {"grpc": 8500, "http": 8501}


def test_model_server_args_name_files_the_config_map_mounts():
    data = named("ConfigMap", CONFIG_MAP)["data"]
    deployments = selected_deployments({"app.kubernetes.io/name": "model-server"})
    assert len(deployments) == 2
    batching = read_batching_config(ROOT / "serving" / "batching.config")

    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        flags = flag_values(container["args"])
        config_volumes = {
            volume["name"]
            for volume in pod["volumes"]
            if volume.get("configMap", {}).get("name") == CONFIG_MAP
        }
        mounted = {
            mount["mountPath"]
            for mount in container["volumeMounts"]
            if mount["name"] in config_volumes
        }
        for flag, key in MODEL_SERVER_FILE_FLAGS.items():
            path = pathlib.PurePosixPath(flags[flag])
            assert str(path.parent) in mounted, f"{flag}={path} is not mounted"
            assert path.name == key and key in data
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert flags["--port"] == str(ports["grpc"])
        assert flags["--rest_api_port"] == str(ports["http"])
        assert flags["--enable_batching"] == "true"
        assert "grpc.max_connection_age_ms=" in flags["--grpc_channel_arguments"]
        # One thread per op, as many ops and batches at once as CPUs.
        cpu_limit = container["resources"]["limits"]["cpu"]
        assert flags["--tensorflow_intra_op_parallelism"] == "1"
        assert flags["--tensorflow_inter_op_parallelism"] == cpu_limit
        assert str(batching.num_batch_threads.value) == cpu_limit


def test_local_processes_run_with_the_images_settings():
    image_env = {}
    for word, rest in dockerfile_instructions(ROOT / "gateway" / "Dockerfile"):
        if word == "ENV":
            image_env.update(pair.split("=", 1) for pair in shlex.split(rest))
    image_flags = flag_values(model_server_image_args())

    for name, value in stack.GATEWAY_ENV.items():
        assert image_env[name] == value
    for flag, value in flag_values(stack.MODEL_SERVER_THREAD_ARGS).items():
        assert image_flags[flag] == value


def test_model_server_args_are_the_images_own():
    image_args = model_server_image_args()
    copies = [
        shlex.split(rest)
        for word, rest in dockerfile_instructions(ROOT / "serving" / "Dockerfile")
        if word == "COPY"
    ]
    baked = {
        pathlib.PurePosixPath(sources[-1]) / pathlib.PurePosixPath(source).name
        if sources[-1].endswith("/")
        else pathlib.PurePosixPath(sources[-1])
        for sources in copies
        for source in sources[:-1]
    }

    (container,) = containers(named("Deployment", "model-server"))
    assert container["args"] == image_args
    for flag in MODEL_SERVER_FILE_FLAGS:
        assert pathlib.PurePosixPath(flag_values(image_args)[flag]) in baked


def test_prometheus_scrapes_the_monitoring_path():
    data = named("ConfigMap", CONFIG_MAP)["data"]
    path = re.search(r'path: "([^"]+)"', data["monitoring.config"]).group(1)

    for deployment in selected_deployments({"app.kubernetes.io/name": "model-server"}):
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "8501",
            "prometheus.io/path": path,
        }


def gateway_environment():
    (container,) = containers(named("Deployment", "gateway"))
    return {entry["name"]: entry["value"] for entry in container["env"]}


def test_gateway_dials_the_headless_service_round_robin():
    environment = gateway_environment()
    settings = load_config(environ=environment)
    headless = [
        service
        for service in of_kind("Service")
        if service["spec"].get("clusterIP") == "None"
    ]
    (service,) = headless
    (port,) = service["spec"]["ports"]

    assert settings["MODEL_SERVER"] == (
        f"dns:///{service['metadata']['name']}:{port['port']}"
    )
    assert settings["MODEL_LB_POLICY"] == "round_robin"
    assert port["targetPort"] == "grpc"
    assert selects(
        service["spec"]["selector"],
        named("Deployment", "model-server")["spec"]["template"]["metadata"]["labels"],
    )
    # Every variable set is a gateway setting or one gunicorn.conf.py reads.
    gunicorn_conf = (ROOT / "gateway" / "gunicorn.conf.py").read_text()
    for name in environment:
        assert name.startswith(ENV_PREFIX), name
        assert name.removeprefix(ENV_PREFIX) in DEFAULTS or f'"{name}"' in gunicorn_conf


def nginx_size_bytes(size):
    """Parses an nginx size ("20m", "512k", "1g") into bytes."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", size)
    assert match, f"not an nginx size: {size!r}"
    scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]
    return int(match.group(1)) * scale


def test_ingress_body_limit_is_the_gateways_upload_limit():
    ingress = named("Ingress", "gateway")
    size = ingress["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/proxy-body-size"
    ]
    limit = load_config(environ=gateway_environment())["MAX_UPLOAD_BYTES"]

    assert nginx_size_bytes(size) == limit == 20 * 1024 * 1024


def test_only_gateway_pods_reach_the_model_servers_grpc_port():
    (policy,) = of_kind("NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    guarded = selected_deployments(spec["podSelector"]["matchLabels"])
    assert {d["metadata"]["name"] for d in guarded} == {
        "model-server",
        "model-server-canary",
    }

    grpc_rules = [
        rule
        for rule in spec["ingress"]
        if any(port["port"] in ("grpc", 8500) for port in rule["ports"])
    ]
    assert len(grpc_rules) == 1
    (source,) = grpc_rules[0]["from"]
    assert set(source) == {"podSelector"}
    allowed = selected_deployments(source["podSelector"]["matchLabels"])
    assert [d["metadata"]["name"] for d in allowed] == ["gateway"]
    for rule in spec["ingress"]:
        assert rule["ports"], "a rule without ports opens every port"
        for port in rule["ports"]:
            assert port["port"] in ("grpc", "http")


def test_canary_differs_from_stable_only_where_documented():
    stable = named("Deployment", "model-server")
    canary = named("Deployment", "model-server-canary")

    def normalized(deployment):
        result = copy.deepcopy(deployment)
        spec = result["spec"]
        spec.pop("replicas", None)
        result["metadata"]["name"] = None
        for labels in (
            result["metadata"]["labels"],
            spec["selector"]["matchLabels"],
            spec["template"]["metadata"]["labels"],
        ):
            labels["track"] = None
        for container in spec["template"]["spec"]["containers"]:
            container["image"] = container["image"].rpartition(":")[0]
        return result

    assert normalized(canary) == normalized(stable)
    assert canary["spec"]["replicas"] == 1
    assert canary["spec"]["template"]["metadata"]["labels"]["track"] == "canary"
    assert stable["spec"]["selector"]["matchLabels"]["track"] == "stable"


def test_dockerfiles_run_as_non_root():
    for path in DOCKERFILES:
        users = [rest for word, rest in dockerfile_instructions(path) if word == "USER"]

        assert users, f"{path} has no USER"
        assert users[-1].split(":")[0] not in ("0", "root"), path


def test_gateway_image_installs_only_the_gateway_requirements():
    instructions = dockerfile_instructions(ROOT / "gateway" / "Dockerfile")
    installs = [rest for word, rest in instructions if word == "RUN" and "pip" in rest]

    assert installs == ["pip install --no-cache-dir -r requirements/gateway.txt"]
    assert any(word == "HEALTHCHECK" for word, _ in instructions)
    env = " ".join(rest for word, rest in instructions if word == "ENV")
    assert "DEEPCLASSIFY_BIND=0.0.0.0:8000" in env
    assert "tensorflow" not in (ROOT / "requirements" / "gateway.txt").read_text()


def test_compose_wires_the_gateway_to_the_model_server():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]

    for service in services.values():
        assert (ROOT / service["build"]["dockerfile"]).is_file()
    environment = services["gateway"]["environment"]
    host, port = environment["DEEPCLASSIFY_MODEL_SERVER"].split(":")
    assert host in services and port == "8500"
    assert environment["DEEPCLASSIFY_BIND"] == "0.0.0.0:8000"


def dockerignore_excludes(path, patterns):
    """Whether Docker leaves ``path`` out of the build context.

    Follows Docker's rules for the patterns used here: ``*`` and ``?`` stay
    within one path segment, ``**`` spans any, a pattern also matches the
    folders above a path, ``!`` re-includes, and the last match decides.
    """
    excluded = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.removeprefix("!").strip("/")
        regex = ""
        for token in re.split(r"(\*\*|\*|\?)", body):
            regex += {"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                token, re.escape(token)
            )
        prefixes = ("/".join(parts[: index + 1]) for index in range(len(parts)))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_sends_what_the_images_copy_and_nothing_else():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and line[0] != "#"]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    sources = [
        source
        for path in DOCKERFILES
        for word, rest in dockerfile_instructions(path)
        if word == "COPY"
        for source in shlex.split(rest)[:-1]
    ]
    needed = [
        name
        for name in tracked
        for source in sources
        if f"{name}/".startswith(f"{source.rstrip('/')}/")
    ]
    assert len(needed) > 10

    for name in needed:
        assert not dockerignore_excludes(name, patterns), name
    # The exported model is copied; an export still being written is not.
    assert not dockerignore_excludes("models/inception_v3/1/saved_model.pb", patterns)
    for name in (
        "models/inception_v3/.export-x1/saved_model.pb",
        ".venv/model/bin/python",
        ".git/HEAD",
        "gateway/__pycache__/routes.cpython-311.pyc",
        "tests/test_k8s.py",
        "requirements/model.txt",
        "k8s/kustomization.yaml",
    ):
        assert dockerignore_excludes(name, patterns), name
