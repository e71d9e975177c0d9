"""The chart and the services agree: ports, paths, ConfigMap names/keys, env var names, label selectors.

Everything on the services' side comes from their own modules (frontend.config, mnist_operator.config,
the frontend's Flask app and auth parser, the operator's renderer), never from copies in this file.
"""

from __future__ import annotations

import base64
import posixpath
from typing import Any

import pytest
from chartlib import RELEASE, VALUE_SETS, Rendered, component, env_of, pod_labels, pod_spec, pods
from frontend import config as frontend_config
from frontend import health as frontend_health
from mnist_operator import config as operator_config

# Value sets that serve without TF Serving (frontend.backend: embedded): the frontend reads the model store.
EMBEDDED_SETS = {"arm64-embedded-values"}
SERVING_SETS = [v for v in VALUE_SETS if v not in EMBEDDED_SETS]


def only(rendered_set: Rendered, name: str) -> dict[str, Any]:
    (obj,) = [o for o in pods(rendered_set) if component(o) == name and o["kind"] == "Deployment"]
    return obj


def container_of(obj: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(obj)["containers"]
    return container


def mount_of(obj: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (volumeMount, volume) whose mount directory holds `path`."""
    container = container_of(obj)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == posixpath.dirname(path)]
    (volume,) = [v for v in pod_spec(obj)["volumes"] if v["name"] == mount["name"]]
    return mount, volume


def container_port(obj: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in container_of(obj)["ports"] if p["name"] == name]
    return port


def service_target(rendered_set: Rendered, service_name: str, port: int) -> tuple[dict[str, Any], str]:
    """The Service's selector and the targetPort (a port name) behind service_name:port."""
    service = rendered_set.get("Service", service_name)
    (entry,) = [p for p in service["spec"]["ports"] if p["port"] == port]
    return service["spec"]["selector"], entry["targetPort"]


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def parse_label_selector(text: str) -> dict[str, str]:
    return dict(term.split("=", 1) for term in text.split(","))


def arg_value(container: dict[str, Any], flag: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in container["args"] if a.startswith(flag + "=")]
    return value


@pytest.fixture(scope="module")
def frontend_app() -> Any:
    """The real Flask app (REST backend pointed nowhere: creating it contacts nothing)."""
    from frontend.app import create_app

    return create_app({"BACKEND": "rest", "SERVING_REST": "http://127.0.0.1:9", "API_KEYS_FILE": None})


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_frontend_env_names_and_values_are_ones_the_frontend_reads(rendered: dict[str, Rendered],
                                                                    value_set: str) -> None:
    settings = {s.env: s for s in frontend_config.ENV_SETTINGS}
    env = env_of(container_of(only(rendered[value_set], "frontend")))
    unknown = set(env) - set(settings)
    assert not unknown, f"the chart sets variables frontend.config does not define: {sorted(unknown)}"
    config = frontend_config.load_from_env({k: v for k, v in env.items() if isinstance(v, str)})
    assert config["BACKEND"] in ({"embedded"} if value_set in EMBEDDED_SETS else {"grpc", "rest"})
    assert config["MODEL_NAME"] == "mnist"
    assert config["TRUST_PROXY"] >= 0


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_frontend_port_probes_and_service_line_up(rendered: dict[str, Rendered], value_set: str,
                                                  frontend_app: Any) -> None:
    r = rendered[value_set]
    frontend = only(r, "frontend")
    container = container_of(frontend)
    bind = env_of(container)["MNIST_BIND"]
    assert bind == f"0.0.0.0:{container_port(frontend, 'http')}" == "0.0.0.0:8080"
    routes = {rule.rule for rule in frontend_app.url_map.iter_rules()}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
        assert container[probe]["httpGet"]["path"].split("?")[0] in routes
    # Readiness asks the frontend's own "ready but empty" form (a fresh install: helm install --wait finishes).
    assert container["readinessProbe"]["httpGet"]["path"] == f"/readyz?empty={frontend_health.EMPTY_OK}"
    assert {"/healthz", "/readyz", "/metrics", "/v1/predict"} <= routes
    selector, target = service_target(r, f"{RELEASE}-mnist-platform-frontend", 80)
    assert target == "http" and selector_matches(selector, pod_labels(frontend))
    assert pod_labels(frontend)["app.kubernetes.io/component"] == "frontend"


@pytest.mark.parametrize("value_set", SERVING_SETS)
def test_frontend_reaches_tf_serving_through_its_services(rendered: dict[str, Rendered], value_set: str) -> None:
    r = rendered[value_set]
    env = env_of(container_of(only(r, "frontend")))
    serving = only(r, "serving")
    args = container_of(serving)
    assert pod_labels(serving)["app.kubernetes.io/component"] == "serving"
    host, port = env["MNIST_SERVING_GRPC"].rsplit(":", 1)
    selector, target = service_target(r, host, int(port))
    assert selector_matches(selector, pod_labels(serving))
    assert container_port(serving, target) == int(arg_value(args, "--port")) == 8500
    rest = env["MNIST_SERVING_REST"].removeprefix("http://")
    rest_host, port = rest.rsplit(":", 1)
    selector, target = service_target(r, rest_host, int(port))
    assert selector_matches(selector, pod_labels(serving))
    assert container_port(serving, target) == int(arg_value(args, "--rest_api_port")) == 8501
    # Both through the headless Service: its DNS name lists every ready pod, and the frontend spreads over them
    # (a ClusterIP would pin each of its long-lived connections to one pod). Not-ready pods are not listed.
    assert rest_host == host
    headless = r.get("Service", host)["spec"]
    assert headless["clusterIP"] == "None" and not headless.get("publishNotReadyAddresses", False)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_routing_file_is_the_configmap_key_the_operator_writes(rendered: dict[str, Rendered], value_set: str) -> None:
    r = rendered[value_set]
    frontend = only(r, "frontend")
    routing_file = env_of(container_of(frontend))["MNIST_ROUTING_FILE"]
    mount, volume = mount_of(frontend, routing_file)
    assert mount["readOnly"] is True
    configmap = volume["configMap"]["name"]
    assert r.get("ConfigMap", configmap)
    assert posixpath.basename(routing_file) == operator_config.env("MNIST_OPERATOR_ROUTING_CONFIGMAP_KEY", {})
    if value_set != "operator-off-values":
        operator_env = env_of(container_of(only(r, "operator")))
        assert operator_env["MNIST_OPERATOR_ROUTING_CONFIGMAP"] == configmap
        assert operator_env["MNIST_OPERATOR_ROUTING_CONFIGMAP_KEY"] == posixpath.basename(routing_file)


@pytest.mark.parametrize("value_set", SERVING_SETS)
def test_model_config_is_the_configmap_key_the_operator_writes(rendered: dict[str, Rendered], value_set: str) -> None:
    r = rendered[value_set]
    serving = only(r, "serving")
    config_file = arg_value(container_of(serving), "--model_config_file")
    _, volume = mount_of(serving, config_file)
    configmap = r.get("ConfigMap", volume["configMap"]["name"])
    assert posixpath.basename(config_file) in configmap["data"]
    assert posixpath.basename(config_file) == operator_config.env("MNIST_OPERATOR_SERVING_CONFIGMAP_KEY", {})
    if value_set != "operator-off-values":
        operator_env = env_of(container_of(only(r, "operator")))
        assert operator_env["MNIST_OPERATOR_SERVING_CONFIGMAP"] == configmap["metadata"]["name"]
        assert operator_env["MNIST_OPERATOR_SERVING_CONFIGMAP_KEY"] == posixpath.basename(config_file)
        # RBAC lets the operator write exactly these two ConfigMaps.
        role = r.get("Role", f"{RELEASE}-mnist-platform-operator")
        (writable,) = [rule for rule in role["rules"] if "configmaps" in rule["resources"] and "patch" in rule["verbs"]]
        assert sorted(writable["resourceNames"]) == sorted(
            [operator_env["MNIST_OPERATOR_SERVING_CONFIGMAP"], operator_env["MNIST_OPERATOR_ROUTING_CONFIGMAP"]])


@pytest.mark.parametrize("value_set", [v for v in VALUE_SETS if v != "operator-off-values"])
def test_operator_env_names_values_and_selector(rendered: dict[str, Rendered], value_set: str,
                                                frontend_app: Any) -> None:
    r = rendered[value_set]
    env = env_of(container_of(only(r, "operator")))
    unknown = set(env) - set(operator_config.ENV_SETTINGS) - {"HOME"}
    assert not unknown, f"the chart sets variables mnist_operator.config does not define: {sorted(unknown)}"
    config = operator_config.OperatorConfig.from_env({k: v for k, v in env.items() if isinstance(v, str)})
    frontend = only(r, "frontend")
    assert config.metrics_port == container_port(frontend, "http")
    assert config.metrics_path in {rule.rule for rule in frontend_app.url_map.iter_rules()}
    selector = parse_label_selector(config.frontend_selector)
    chosen = [obj for obj in pods(r) if selector_matches(selector, pod_labels(obj))]
    assert chosen == [frontend], "the operator's frontend selector must pick the frontend pods and nothing else"
    # TF Serving's REST address, or none (the AVAILABLE gate then checks the model store) where it is not deployed:
    # the ClusterIP Service, which reaches the pods the frontend spreads over through its headless one.
    if "MNIST_SERVING_REST" in env_of(container_of(frontend)):
        host, port = config.serving_rest.removeprefix("http://").rsplit(":", 1)
        selector, target = service_target(r, host, int(port))
        assert selector_matches(selector, pod_labels(only(r, "serving"))) and target == "rest"
    else:
        assert config.serving_rest == ""
    # The namespace it watches is its own (downward API), where the chart puts the CRs' ConfigMaps.
    assert env["MNIST_OPERATOR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_everyone_agrees_on_the_model_store_path(rendered: dict[str, Rendered], value_set: str) -> None:
    r = rendered[value_set]
    base = "/models/mnist"  # the model base path in the cluster (the chart's serving mount)
    reader = only(r, "frontend" if value_set in EMBEDDED_SETS else "serving")  # who loads the versions
    (models_mount,) = [m for m in container_of(reader)["volumeMounts"] if m["name"] == "models"]
    assert posixpath.join(models_mount["mountPath"], "mnist") == base
    trainers = [o for o in pods(r) if component(o) == "trainer"]
    for trainer in trainers:
        assert arg_value(container_of(trainer), "--model-base-path") == base
    if value_set != "operator-off-values":
        operator = only(r, "operator")
        operator_env = env_of(container_of(operator))
        # The operator reads the store only where it must (test_chart_model_store.py): then at the same path.
        if operator_env["MNIST_OPERATOR_MODEL_BASE_PATH"]:
            assert posixpath.join(operator_env["MNIST_OPERATOR_MODEL_BASE_PATH"], "mnist") == base
            (operator_mount,) = [m for m in container_of(operator)["volumeMounts"] if m["name"] == "models"]
            assert operator_mount["mountPath"] == models_mount["mountPath"]


@pytest.mark.parametrize("value_set", sorted(EMBEDDED_SETS))
def test_without_tf_serving_the_frontend_reads_the_store_and_the_operator_writes_routing_only(
        rendered: dict[str, Rendered], value_set: str) -> None:
    r = rendered[value_set]
    assert not [o for o in r.objects if o["kind"] != "ConfigMap"
                and o["metadata"]["labels"].get("app.kubernetes.io/component") == "serving"], \
        "no TF Serving Deployment, Service, HPA, PDB or NetworkPolicy"
    frontend = only(r, "frontend")
    env = env_of(container_of(frontend))
    config = frontend_config.load_from_env({k: v for k, v in env.items() if isinstance(v, str)})
    assert config["BACKEND"] == "embedded" and "MNIST_SERVING_GRPC" not in env
    mount, volume = mount_of(frontend, config["MODEL_BASE_PATH"])
    assert mount["readOnly"] is True and volume["persistentVolumeClaim"]["readOnly"] is True
    assert volume["persistentVolumeClaim"]["claimName"] == f"{RELEASE}-mnist-platform-models"
    operator = operator_config.OperatorConfig.from_env(
        {k: v for k, v in env_of(container_of(only(r, "operator"))).items() if isinstance(v, str)})
    assert operator.serving_configmap == "" and operator.serving_rest == ""
    assert posixpath.join(operator.model_base_path, "mnist") == config["MODEL_BASE_PATH"]


def test_generated_api_key_secret_works_with_the_frontend_parser(rendered: dict[str, Rendered]) -> None:
    from frontend.auth import check_key, parse_key_file

    r = rendered["default"]
    frontend = only(r, "frontend")
    keys_file = env_of(container_of(frontend))["MNIST_API_KEYS_FILE"]
    _, volume = mount_of(frontend, keys_file)
    (item,) = volume["secret"]["items"]
    assert item["path"] == posixpath.basename(keys_file)
    secret = r.get("Secret", volume["secret"]["secretName"])
    assert set(secret["data"]) == {"api-key", "api-keys"}
    assert item["key"] == "api-keys", "only the hashed file is mounted into the frontend"
    keys = parse_key_file(base64.b64decode(secret["data"]["api-keys"]))
    plain = base64.b64decode(secret["data"]["api-key"]).decode()
    assert len(plain) >= 32
    assert check_key(keys, plain).name == "default"


def test_existing_secret_is_used_and_none_is_generated(rendered: dict[str, Rendered]) -> None:
    r = rendered["existing-secrets-values"]
    frontend = only(r, "frontend")
    _, volume = mount_of(frontend, env_of(container_of(frontend))["MNIST_API_KEYS_FILE"])
    assert volume["secret"]["secretName"] == "mnist-api-keys"
    assert volume["secret"]["items"] == [{"key": "keys.txt", "path": "api-keys"}]
    assert "mnist-api-keys" not in [s["metadata"]["name"] for s in r.of_kind("Secret")]
    assert not [p for p in r.of_kind("PersistentVolumeClaim")]
    assert pod_spec(frontend)["volumes"] and all(
        v["persistentVolumeClaim"]["claimName"] == "shared-models"
        for obj in pods(r) for v in pod_spec(obj)["volumes"] if "persistentVolumeClaim" in v)


def test_feedback_key_file_is_mounted_from_a_shared_secret(rendered: dict[str, Rendered]) -> None:
    r = rendered["default"]
    frontend = only(r, "frontend")
    key_file = env_of(container_of(frontend))["MNIST_FEEDBACK_KEY_FILE"]
    _, volume = mount_of(frontend, key_file)
    secret = r.get("Secret", volume["secret"]["secretName"])
    assert posixpath.basename(key_file) in secret["data"]
    assert len(base64.b64decode(secret["data"][posixpath.basename(key_file)])) >= 32


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_trainer_args_parse_with_the_trainer_cli(rendered: dict[str, Rendered], value_set: str) -> None:
    from trainer import cli
    trainers = [o for o in pods(rendered[value_set]) if component(o) == "trainer"]
    assert trainers
    for trainer in trainers:
        container = container_of(trainer)
        assert container["command"] == ["mnist-train"]
        config = cli.config_from_args(cli.build_parser().parse_args(container["args"]))
        assert str(config.model_base_path) == "/models/mnist" and config.model_name == "mnist"
        assert str(config.data).startswith("/")
        assert env_of(container)["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        registers = config.register == "always"
        assert registers is pod_spec(trainer)["automountServiceAccountToken"], "registering needs the token"


@pytest.mark.parametrize("value_set", [v for v in VALUE_SETS if v != "operator-off-values"])
def test_operator_args_parse_with_the_operator_cli(rendered: dict[str, Rendered], value_set: str) -> None:
    from mnist_operator import cli
    operator = only(rendered[value_set], "operator")
    container = container_of(operator)
    assert container["command"] == ["mnist-operator"]
    args = cli.build_parser().parse_args(container["args"])
    assert args.command == "run" and args.standalone, "one replica, no peering"
    # A fresh install needs no manual step: the operator creates its ConfigMaps where Argo CD skipped the hooks,
    # and rolls the first trained version in (sim-values leaves that to make sim-up).
    assert args.create_configmaps
    assert args.initial_rollout is (value_set != "sim-values")
    liveness = args.liveness.rsplit(":", 1)[1]
    port, path = liveness.split("/", 1)
    assert int(port) == container_port(operator, "health")
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/" + path, "port": "health"}
    assert operator["spec"]["replicas"] == 1 and operator["spec"]["strategy"]["type"] == "Recreate"


def dockerfile_lines(path: str) -> list[str]:
    """Instructions of a Dockerfile, continuation lines joined."""
    from chartlib import REPO_ROOT

    file = REPO_ROOT / path
    if not file.exists():
        pytest.fail(f"{path} does not exist yet: the chart deploys the image built from it (make images)")
    text = file.read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def final_stage(lines: list[str]) -> list[str]:
    starts = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    return lines[starts[-1]:]


@pytest.mark.parametrize(("image", "dockerfile", "port"), [("frontend", "services/frontend/Dockerfile", "http"),
                                                           ("operator", "operator/Dockerfile", "health")])
def test_images_expose_the_ports_and_user_the_chart_expects(rendered: dict[str, Rendered], image: str,
                                                             dockerfile: str, port: str) -> None:
    lines = final_stage(dockerfile_lines(dockerfile))
    exposed = {int(p.split("/")[0]) for line in lines if line.upper().startswith("EXPOSE ") for p in line.split()[1:]}
    assert container_port(only(rendered["default"], image), port) in exposed
    (user,) = [line.split()[1] for line in lines if line.upper().startswith("USER ")][-1:]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "a numeric non-root USER lets runAsNonRoot verify it"


def test_trainer_image_bakes_the_mnist_file_the_chart_points_at(rendered: dict[str, Rendered]) -> None:
    """Decision (docs/CLUSTER.md): the trainer image carries data/mnist.npz; the Job never downloads."""
    lines = final_stage(dockerfile_lines("services/trainer/Dockerfile"))
    copies = [line.split() for line in lines if line.upper().startswith("COPY ") and "mnist.npz" in line]
    assert copies, "services/trainer/Dockerfile does not COPY data/mnist.npz into the image"
    destinations = {parts[-1] for parts in copies}
    (trainer,) = [o for o in pods(rendered["default"]) if o["kind"] == "Job"]
    data = arg_value(container_of(trainer), "--data")
    assert data in destinations or posixpath.dirname(data) + "/" in destinations \
        or posixpath.dirname(data) in destinations, f"chart reads {data}, the image copies to {destinations}"


def test_operator_writes_the_base_path_tf_serving_mounts(rendered: dict[str, Rendered]) -> None:
    r = rendered["default"]
    template = env_of(container_of(only(r, "operator")))["MNIST_OPERATOR_SERVING_BASE_PATH_TEMPLATE"]
    assert "MNIST_OPERATOR_SERVING_BASE_PATH_TEMPLATE" in operator_config.ENV_SETTINGS
    (mount,) = [m for m in container_of(only(r, "serving"))["volumeMounts"] if m["name"] == "models"]
    assert template.format(model="mnist") == posixpath.join(mount["mountPath"], "mnist")


@pytest.mark.parametrize(("extra", "limit"), [
    ([], "4194304"),
    (["--set", "frontend.maxBodyBytes=1000000"], "1000000"),
    (["--set-string", "frontend.ingress.annotations.nginx\\.ingress\\.kubernetes\\.io/proxy-body-size=16m"], "16m"),
    (["--set", "frontend.ingress.className=traefik"], None),
])
def test_the_ingress_body_limit_is_the_frontends_unless_set(helm: str, extra: list[str], limit: str | None) -> None:
    from chartlib import render
    r = render(helm, "default", *extra)
    (ingress,) = r.of_kind("Ingress")
    annotations = ingress["metadata"].get("annotations") or {}
    assert annotations.get("nginx.ingress.kubernetes.io/proxy-body-size") == limit
    if limit and limit.isdigit():
        frontend_limit = env_of(container_of(only(r, "frontend")))["MNIST_MAX_BODY_BYTES"]
        assert frontend_config.load_from_env({"MNIST_MAX_BODY_BYTES": frontend_limit})["MAX_BODY_BYTES"] == int(limit)
