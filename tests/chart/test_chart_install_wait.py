"""`helm install --wait` and an Argo CD sync finish on a fresh cluster, and the first model still serves once trained.

What Helm's --wait (and Argo CD's health check before PostSync) waits for is every release object ready; the first
model is trained by a post-install hook (Argo CD: PostSync), which runs only after that wait. So, read from the
rendered chart and run for real where it is code:
- nothing Helm waits on before the wait needs a model: the only pre-install hooks are ConfigMaps, every Job or Pod
  hook is post-install or a test, and no plain Job is a release object;
- every Deployment's readiness passes with no model anywhere: TF Serving's rendered probe and the frontend's
  rendered probe path, against the TF Serving stand-in started with the chart's initial models.config and the real
  frontend configured like the chart's pod (tests/cluster/test_chart_first_model.py runs the install itself on the
  real control plane, where kwok marks pods Ready regardless of probes);
- readiness is strict again once something is routed;
- Argo CD skips the ConfigMap hooks (it renders without lookup and would re-apply them on every sync over what the
  operator wrote), and the operator creates them and rolls the first version in (its --create-configmaps and
  --initial-rollout flags, parsed by the operator's own CLI).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chartlib import RELEASE, VALUE_SETS, Rendered, component, pod_spec, pods, render, serving_standin

PREFIX = f"{RELEASE}-mnist-platform"
ARGO_HOOK = "argocd.argoproj.io/hook"


def hooks(r: Rendered) -> list[tuple[dict[str, Any], set[str]]]:
    return [(o, {h.strip() for h in o["metadata"]["annotations"]["helm.sh/hook"].split(",")})
            for o in r.objects if "helm.sh/hook" in (o["metadata"].get("annotations") or {})]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_nothing_helm_waits_on_before_the_wait_needs_a_model(rendered: dict[str, Rendered], value_set: str) -> None:
    r = rendered[value_set]
    for obj, events in hooks(r):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in ("Job", "Pod"):
            assert events <= {"post-install", "test"}, f"{where} would run (and be waited for) before --wait ends"
        elif events != {"test"}:  # `helm test`'s own objects run only then
            assert obj["kind"] == "ConfigMap" and events == {"pre-install", "pre-upgrade"}, where
    plain_jobs = [o["metadata"]["name"] for o in r.of_kind("Job") if "helm.sh/hook" not in o["metadata"]["annotations"]]
    assert not plain_jobs, "a Job in the release would make --wait wait for a training"
    training = [o for o, events in hooks(r) if o["kind"] == "Job"]
    if r.get("Deployment", f"{PREFIX}-frontend") and value_set not in ("sim-values", "operator-off-values"):
        assert [o["metadata"]["name"] for o in training] == [f"{PREFIX}-train-initial"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_argo_cd_skips_the_configmap_hooks_only_where_the_operator_creates_them(
        rendered: dict[str, Rendered], value_set: str) -> None:
    from mnist_operator.cli import build_parser
    r = rendered[value_set]
    configmaps = [o for o, events in hooks(r) if o["kind"] == "ConfigMap" and "pre-install" in events]
    assert {o["metadata"]["name"] for o in configmaps} == {f"{PREFIX}-model-config", f"{PREFIX}-routing"}
    operators = [o for o in pods(r) if component(o) == "operator"]
    if not operators:  # nobody else creates them: Argo CD must apply them (once; the user owns them after)
        assert all(ARGO_HOOK not in o["metadata"]["annotations"] for o in configmaps)
        return
    assert all(o["metadata"]["annotations"][ARGO_HOOK] == "Skip" for o in configmaps)
    args = build_parser().parse_args(pod_spec(operators[0])["containers"][0]["args"])
    assert args.create_configmaps, "without Helm's hooks the operator is who creates them"


# ---------------------------------------------------------------------------------------- readiness, run for real

@pytest.fixture(params=["default", "gateway-api-values"])
def fresh(helm: str, request: pytest.FixtureRequest) -> Rendered:
    """The default values (the frontend talks gRPC to TF Serving) and a value set with the REST transport."""
    return render(helm, request.param)


@pytest.fixture
def standin(fresh: Rendered, tmp_path: Path, published_models: Any) -> Iterator[tuple[Any, Path]]:
    """The TF Serving stand-in started with the chart's initial models.config (/models/mnist: the published models)."""
    config = tmp_path / "models.config"
    config.write_text(fresh.get("ConfigMap", f"{PREFIX}-model-config")["data"]["models.config"])
    with serving_standin(config, published_models.base_path) as serving:
        yield serving, config


def serving_probe(fresh: Rendered, rest_port: int) -> int:
    (serving,) = [o for o in pods(fresh) if component(o) == "serving"]
    command = pod_spec(serving)["containers"][0]["readinessProbe"]["exec"]["command"]
    port = str(serving["spec"]["template"]["spec"]["containers"][0]["ports"][1]["containerPort"])
    command = [part.replace(f"/dev/tcp/127.0.0.1/{port}", f"/dev/tcp/127.0.0.1/{rest_port}") for part in command]
    return subprocess.run(command, capture_output=True, timeout=20).returncode


def test_fresh_install_is_ready_before_a_model_exists_and_strict_once_routed(
        fresh: Rendered, standin: tuple[Any, Path], tmp_path: Path) -> None:
    from frontend.app import create_app

    serving, config = standin
    assert serving_probe(fresh, serving.rest_port) == 0, "TF Serving: ready but empty"

    (frontend,) = [o for o in pods(fresh) if component(o) == "frontend"]
    container = pod_spec(frontend)["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    path = container["readinessProbe"]["httpGet"]["path"]
    routing = tmp_path / "routing" / "routing.json"  # the optional ConfigMap volume, empty on a fresh install
    app = create_app({"BACKEND": env["MNIST_BACKEND"], "MODEL_NAME": env["MNIST_MODEL_NAME"],
                      "SERVING_GRPC": serving.grpc_target, "SERVING_REST": serving.rest_url,
                      "ROUTING_FILE": str(routing), "ROUTING_CHECK_S": 0.0, "FEEDBACK_KEY_FILE": None})
    try:
        client = app.test_client()
        ready = client.get(path)
        assert ready.status_code == 200 and ready.json["status"] == "ready but empty", ready.json
        assert client.post("/v1/predict", json={"instances": [[[0] * 28] * 28]}).status_code == 503, \
            "ready, and honest: no model yet"

        # The operator's initial rollout routes v1 before TF Serving has it: not ready until it is AVAILABLE.
        routing.parent.mkdir()
        routing.write_text(json.dumps({"model": "mnist", "strategy": "single", "generation": 1,
                                       "routes": [{"version": 1, "label": "stable", "weight": 100}]}))
        not_ready = client.get(path)
        assert not_ready.status_code == 503 and not_ready.json["status"] == "not ready", not_ready.json
        config.write_text('model_config_list { config { name: "mnist" base_path: "/models/mnist" '
                          'model_platform: "tensorflow" model_version_policy { specific { versions: 1 } } } }\n')
        assert serving.wait_for_state(1, "AVAILABLE", timeout=60)
        assert client.get(path).status_code == 200
        assert serving_probe(fresh, serving.rest_port) == 0
    finally:
        app.extensions["mnist_frontend"].backend.close()
