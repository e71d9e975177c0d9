"""helm-unittest style: each switch in values.yaml adds or removes exactly what it says, names stay stable."""

from __future__ import annotations

from collections import Counter

from chartlib import CHART, RELEASE, Rendered, component, pod_spec, pods, render

CI_TLS = CHART / "ci" / "ingress-tls-values.yaml"

PREFIX = f"{RELEASE}-mnist-platform"


def kinds(r: Rendered) -> Counter[str]:
    return Counter(obj["kind"] for obj in r.objects)


def names(r: Rendered, kind: str) -> set[str]:
    return {obj["metadata"]["name"] for obj in r.of_kind(kind)}


def test_default_install_has_every_part(rendered: dict[str, Rendered]) -> None:
    r = rendered["default"]
    assert names(r, "Deployment") == {f"{PREFIX}-serving", f"{PREFIX}-frontend", f"{PREFIX}-operator"}
    assert names(r, "Service") == {f"{PREFIX}-serving-grpc", f"{PREFIX}-serving-rest", f"{PREFIX}-serving-headless",
                                   f"{PREFIX}-frontend"}
    assert names(r, "ConfigMap") >= {f"{PREFIX}-model-config", f"{PREFIX}-routing", f"{PREFIX}-serving-config"}
    assert names(r, "HorizontalPodAutoscaler") == {f"{PREFIX}-serving", f"{PREFIX}-frontend"}
    assert names(r, "PodDisruptionBudget") == {f"{PREFIX}-serving", f"{PREFIX}-frontend"}
    assert names(r, "Job") == {f"{PREFIX}-train-initial"} and names(r, "CronJob") == {f"{PREFIX}-trainer"}
    assert kinds(r)["Ingress"] == 1 and kinds(r)["HTTPRoute"] == 0
    assert names(r, "PersistentVolumeClaim") == {f"{PREFIX}-models"}
    assert all(obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE for obj in r.objects)


def test_all_names_are_dns_labels(helm: str) -> None:
    long = render(helm, "default", "--set", "fullnameOverride=" + "a" * 70)
    for obj in long.objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 63 and not name.endswith("-"), name


def test_operator_off_removes_operator_and_its_rbac(rendered: dict[str, Rendered]) -> None:
    r = rendered["operator-off-values"]
    assert not [o for o in r.objects if o["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"]
    assert not r.of_kind("ClusterRole") and not r.of_kind("ClusterRoleBinding")
    assert names(r, "ConfigMap") >= {f"{PREFIX}-model-config", f"{PREFIX}-routing"}, "written by hand then"
    assert not r.of_kind("Job"), "runAtInstall off"
    (trainer,) = [o for o in pods(r) if component(o) == "trainer"]
    assert pod_spec(trainer)["automountServiceAccountToken"] is False
    assert not r.of_kind("Role"), "registerModelVersion off: the trainer needs no Role"


def test_hpa_off_sets_replicas_and_hpa_on_leaves_them_to_the_hpa(rendered: dict[str, Rendered]) -> None:
    fixed = rendered["hpa-off-values"]
    assert not fixed.of_kind("HorizontalPodAutoscaler") and not fixed.of_kind("PodDisruptionBudget")
    assert fixed.get("Deployment", f"{PREFIX}-serving")["spec"]["replicas"] == 2
    assert fixed.get("Deployment", f"{PREFIX}-frontend")["spec"]["replicas"] == 3
    scaled = rendered["default"]
    assert "replicas" not in scaled.get("Deployment", f"{PREFIX}-frontend")["spec"]
    hpa = scaled.get("HorizontalPodAutoscaler", f"{PREFIX}-frontend")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{PREFIX}-frontend"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


def test_ingress_tls_values(rendered: dict[str, Rendered]) -> None:
    (ingress,) = rendered["ingress-tls-values"].of_kind("Ingress")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"secretName": "mnist-example-com-tls", "hosts": ["mnist.example.com"]}]
    (rule,) = spec["rules"]
    assert rule["host"] == "mnist.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": f"{PREFIX}-frontend", "port": {"name": "http"}}
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "8m"
    (default,) = rendered["default"].of_kind("Ingress")
    assert "tls" not in default["spec"] and "host" not in default["spec"]["rules"][0]


def test_model_store_settings_reach_the_claim(rendered: dict[str, Rendered]) -> None:
    (claim,) = rendered["gateway-api-values"].of_kind("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == "nfs-client"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    (default,) = rendered["default"].of_kind("PersistentVolumeClaim")
    assert "storageClassName" not in default["spec"], "empty: the cluster's default StorageClass"


def test_rest_backend_switch(rendered: dict[str, Rendered]) -> None:
    r = rendered["gateway-api-values"]
    (frontend,) = [o for o in pods(r) if component(o) == "frontend"]
    env = {e["name"]: e.get("value") for e in pod_spec(frontend)["containers"][0]["env"]}
    assert env["MNIST_BACKEND"] == "rest"


def test_install_time_training_is_a_post_install_hook(rendered: dict[str, Rendered]) -> None:
    job = rendered["default"].get("Job", f"{PREFIX}-train-initial")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install"
    cron = rendered["default"].get("CronJob", f"{PREFIX}-trainer")["spec"]
    assert cron["suspend"] is True and cron["concurrencyPolicy"] == "Forbid"


def test_helm_test_pod_is_a_test_hook_reading_the_plain_key(rendered: dict[str, Rendered]) -> None:
    r = rendered["default"]
    pod = r.get("Pod", f"{PREFIX}-test-prediction")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["api-key"]["secret"]["items"] == [{"key": "api-key", "path": "api-key"}]
    args = pod["spec"]["containers"][0]["args"]
    assert f"--url=http://{PREFIX}-frontend:80" in args and "--expect=7" in args
    config = r.get("ConfigMap", f"{PREFIX}-test-prediction")
    assert config["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert {"smoke_predict.py", "smoke-digit.json"} == set(config["data"])


def test_test_pod_is_skipped_without_a_plain_key(helm: str) -> None:
    r = render(helm, "existing-secrets-values", "--set", "frontend.apiKeys.plainKeyKey=")
    assert not r.of_kind("Pod")


def notes(helm: str, *args: str) -> str:
    from chartlib import run_helm

    text = run_helm(helm, "install", RELEASE, str(CHART), "-n", "ml", "--dry-run=client", *args).stdout
    return text[text.index("NOTES:"):]


def test_notes_tell_how_to_reach_the_endpoint_get_the_key_and_roll_out(helm: str,
                                                                        rendered: dict[str, Rendered]) -> None:
    text = notes(helm)
    r = rendered["default"]
    assert "http://localhost/" in text
    assert f"get secret {PREFIX}-api-keys" in text and "{.data.api-key}" in text
    assert r.get("Secret", f"{PREFIX}-api-keys")["data"]["api-key"]
    assert f"create job --from=cronjob/{PREFIX}-trainer" in text and r.get("CronJob", f"{PREFIX}-trainer")
    assert f"logs -f job/{PREFIX}-train-initial" in text and r.get("Job", f"{PREFIX}-train-initial")
    assert "apply -f k8s/examples/canary.yaml" in text and f"helm test {RELEASE}" in text
    tls = notes(helm, "-f", str(CI_TLS))
    assert "https://mnist.example.com/" in tls
    forward = notes(helm, "--set", "frontend.ingress.enabled=false")
    assert f"port-forward svc/{PREFIX}-frontend 8080:80" in forward
