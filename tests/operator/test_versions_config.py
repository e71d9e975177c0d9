"""Model store facts, ModelVersion manifests, the env settings table and the docs that must list them."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import jsonschema
import yaml
from mnist_operator import cluster_facts, handlers, loop, versions
from mnist_operator import decide as core
from mnist_operator.config import ENV_SETTINGS, OperatorConfig

ROOT = Path(__file__).resolve().parents[2]


def publish(root: Path, version: int, accuracy: float | None = 0.97) -> None:
    d = root / str(version) / "assets.extra"
    d.mkdir(parents=True)
    (root / str(version) / "saved_model.pb").write_bytes(b"")
    if accuracy is not None:
        (d / "metrics.json").write_text(json.dumps({"test_accuracy": accuracy, "created": "2026-01-01T00:00:00Z",
                                                    "dataset_sha256": "ab" * 32, "git_commit": None}))


def test_store_lists_published_versions_and_ignores_temp_and_half_written_dirs(tmp_path):
    publish(tmp_path, 1)
    publish(tmp_path, 3, None)
    (tmp_path / ".tmp-abc").mkdir()
    (tmp_path / "4").mkdir()  # no saved_model.pb yet
    assert versions.store_versions(tmp_path) == [1, 3]
    info = versions.store_candidate_info(tmp_path, 1)
    assert info.exists and info.available and info.test_accuracy == 0.97
    assert versions.store_candidate_info(tmp_path, 3).test_accuracy is None
    assert not versions.store_candidate_info(tmp_path, 4).exists


def test_modelversion_manifest_is_valid_against_the_crd(tmp_path):
    publish(tmp_path, 2)
    doc = versions.modelversion_manifest("mnist", 2, "/models/mnist/2", versions.store_metrics(tmp_path, 2), "ml")
    crd = yaml.safe_load((ROOT / "charts/mnist-platform/crds/modelversions.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    jsonschema.Draft7Validator(schema).validate(doc)
    assert doc["metadata"]["name"] == "mnist-v2" and doc["spec"]["testAccuracy"] == 0.97


def test_unreachable_tf_serving_is_not_available_and_says_why():
    ok, seen = versions.serving_available("http://127.0.0.1:9", "mnist", 2, 0.5)
    assert not ok and "TF Serving" in seen


def test_config_reads_every_setting_and_templates_configmap_names():
    cfg = OperatorConfig.from_env({"MNIST_OPERATOR_METRICS_URLS": "http://a/metrics, http://b/metrics",
                                   "MNIST_OPERATOR_ROUTING_CONFIGMAP": "{model}-routing"})
    assert cfg.metrics_urls == ("http://a/metrics", "http://b/metrics")
    assert cfg.routing_configmap.format(model="mnist") == "mnist-routing"
    assert cfg.metrics_port == 8080 and cfg.serving_key == "models.config" and cfg.routing_key == "routing.json"


def test_the_settings_table_fills_every_config_field_once():
    assert sorted(s.field for s in ENV_SETTINGS.values()) == sorted(f.name for f in dataclasses.fields(OperatorConfig))
    cfg = OperatorConfig.from_env({"MNIST_OPERATOR_HTTP_TIMEOUT_S": "0.5", "MNIST_OPERATOR_SERVING_REPLICAS": "",
                                   "POD_NAMESPACE": "ml", "MNIST_OPERATOR_SERVING_BASE_PATH_TEMPLATE": "/m/{model}"})
    assert cfg.http_timeout_s == 0.5 and cfg.serving_replicas == () and cfg.pod_namespace == "ml"
    assert cfg.serving_base_path_template == "/m/{model}" and cfg.max_tick_s == 5.0


def test_the_operator_reads_the_environment_only_through_the_settings_table():
    # Written there (cli.py hands the --namespace it was given to the settings) is fine; read elsewhere is a bypass.
    # local.py's --model-base-path default is the variable the frontend and the trainer share: local mode, not a
    # setting of the operator that the chart configures.
    allowed = {("cli.py", "os.environ.get('MNIST_MODEL_BASE_PATH')")}
    package = ROOT / "operator" / "mnist_operator"
    touching, reads = set(), set()
    for path in sorted(package.glob("*.py")):
        if path.name == "config.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") \
                    and ast.unparse(node.value) == "os":
                touching.add(path.name)
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv"):
                reads.add((path.name, ast.unparse(node)))
    assert reads == allowed, f"environment read outside config.ENV_SETTINGS: {sorted(reads - allowed)}"
    assert touching == {"cli.py"}, f"os.environ used outside config.py and the CLI: {sorted(touching)}"


def test_docs_list_every_environment_variable():
    doc = (ROOT / "docs" / "OPERATOR.md").read_text()
    for name in ENV_SETTINGS:
        short = name.removesuffix("_KEY")
        assert name in doc or short in doc, f"{name} is not documented in docs/OPERATOR.md"


def test_next_delay_polls_fast_while_waiting_for_facts_and_rarely_when_done():
    spec = {"model": "mnist", "candidateVersion": 2, "analysis": {"interval": "30s"}}
    assert core.next_delay({"phase": "Progressing", "stage": "Loading"}, spec, 5.0) == 0.5
    assert core.next_delay({"phase": "Progressing", "stage": "Canary"}, spec, 5.0) == 5.0
    assert core.next_delay({"phase": "Progressing", "stage": "Canary"}, spec, 1.0) == 1.0
    assert core.next_delay({"phase": "Promoted", "stage": "Done"}, spec, 5.0) == core.TERMINAL_RECHECK_S
    assert core.next_delay({"phase": "Failed", "stage": "Done"}, {"model": "mnist"}, 5.0) == core.TERMINAL_RECHECK_S
    # A new stage often has its next fact ready already: decide again at once.
    canary = {"phase": "Progressing", "stage": "Canary"}
    assert core.next_delay(canary, spec, 5.0, before={"phase": "Progressing", "stage": "Loading"}) == 0.0
    assert core.next_delay(canary, spec, 5.0, before=canary) == 5.0


def test_discovery_finds_published_versions_without_a_modelversion(tmp_path):
    publish(tmp_path / "mnist", 1)
    publish(tmp_path / "mnist", 2)
    publish(tmp_path / "fashion", 1)
    (tmp_path / ".tmp-x").mkdir()
    assert versions.unregistered(tmp_path, {"mnist-v1"}) == [("fashion", 1), ("mnist", 2)]
    assert versions.unregistered(tmp_path / "nope", set()) == []


class _NoModelVersions:
    """A CustomObjectsApi stand-in: no ModelVersion exists; creating one is recorded."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def get_namespaced_custom_object(self, *args, **kwargs):
        from kubernetes.client.rest import ApiException

        raise ApiException(status=404, reason="Not Found")

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.created.append(body["metadata"]["name"])


def test_the_kopf_shell_gathers_the_stable_versions_facts_like_the_candidates(tmp_path):
    publish(tmp_path / "mnist", 1)
    publish(tmp_path / "mnist", 2)
    cfg = OperatorConfig.from_env({"MNIST_OPERATOR_MODEL_BASE_PATH": str(tmp_path)})
    c = cluster_facts.Clients(cfg=cfg, core=None, custom=_NoModelVersions(), http=None)
    routing = {"model": "mnist", "strategy": "single", "routes": [{"version": 1, "label": "stable", "weight": 100}]}

    class RoutingGiven(handlers.KubeShell):  # the cluster's facts, but the routing document from the test
        doc: dict | None = None

        def routing(self, model):
            return self.doc

    def stable_facts(spec, doc):
        shell = RoutingGiven(c, "default", "r")
        shell.doc = doc
        at_the_gate = loop.Rollout("default/r", spec, {"phase": "Progressing", "stage": "Gate"})
        return loop.gather(shell, at_the_gate).versions

    facts = stable_facts({"model": "mnist", "candidateVersion": 2, "stableVersion": 99}, routing)
    assert list(facts) == [99] and not facts[99].exists and not facts[99].available
    facts = stable_facts({"model": "mnist", "candidateVersion": 2}, routing)
    assert list(facts) == [1] and facts[1].exists and facts[1].available
    assert "mnist-v1" in c.custom.created, "a stable version found in the store is registered like a candidate"
    assert stable_facts({"model": "mnist", "candidateVersion": 2, "bogus": 1}, routing) == {}
    assert stable_facts({"model": "mnist", "candidateVersion": 2}, None) == {}
