"""The chart installed for real on the test control plane, one value set at a time.

What a value set needs in the cluster first: a PersistentVolume for each claim (no storage provisioner
runs), the claim and Secret it names when they are managed outside the chart, the Gateway API's HTTPRoute
CRD when it renders a route. What every install must show: every pod admitted under the restricted Pod
Security Standard, every Deployment rolled out and available, every object of the release present, and
everything a pod mounts or reads there (kwok starts pods without looking at their volumes).

Used by tests/chart/test_chart_helm_install.py and tests/cluster/test_chart_*.py, test_scheduling.py.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from mnist_operator import render

from scripts.sim.control_plane import ControlPlane
from tests.support.cluster import Cluster, wait_for
from tests.support.cluster.fixtures import scratch_namespace

Obj = dict[str, Any]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "mnist-platform"
# "default" plus every file under ci/ (the list grows with the files).
VALUE_SETS = ["default"] + [path.stem for path in sorted((CHART / "ci").glob("*.yaml"))]
RELEASE = "mnist"
PREFIX = f"{RELEASE}-mnist-platform"
RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"
CHART_CRDS = ("modelrollouts.ml.mnist-platform.dev", "modelversions.ml.mnist-platform.dev")
POD_KINDS = ("Deployment", "Job", "CronJob", "Pod")
TIMEOUT = "90s"

# What the operator writes into its two ConfigMaps (a rollout's end state), through a merge patch of its
# own as the operator does (mnist_operator.handlers), so that the field manager differs from helm's.
OPERATOR_WRITES = {
    f"{PREFIX}-model-config": {"models.config": render.render_model_config(
        [render.ServingState("mnist", "/models/mnist", (2,), {"stable": 2})])},
    f"{PREFIX}-routing": {"routing.json": render.render_routing(render.RoutingState.single("mnist", 2), 7)},
}

# The fields of the Gateway API's HTTPRoute (gateway.networking.k8s.io/v1, standard channel) that a route
# to one Service uses, typed as the real CRD types them; the rest of the real CRD is left out. Enough for
# the API server to validate the chart's route strictly (a misspelt field is an error, not pruned).
HTTPROUTE_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: httproutes.gateway.networking.k8s.io
  annotations:
    # *.k8s.io groups are reserved to APIs approved upstream; the real CRD carries its approval.
    api-approved.kubernetes.io: https://github.com/kubernetes-sigs/gateway-api/pull/1538
spec:
  group: gateway.networking.k8s.io
  scope: Namespaced
  names: {kind: HTTPRoute, listKind: HTTPRouteList, plural: httproutes, singular: httproute}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            spec:
              type: object
              properties:
                parentRefs:
                  type: array
                  maxItems: 32
                  items:
                    type: object
                    required: [name]
                    properties:
                      group: {type: string}
                      kind: {type: string}
                      namespace: {type: string}
                      name: {type: string, minLength: 1, maxLength: 253}
                      sectionName: {type: string}
                      port: {type: integer, format: int32, minimum: 1, maximum: 65535}
                hostnames:
                  type: array
                  maxItems: 16
                  items: {type: string, minLength: 1, maxLength: 253}
                rules:
                  type: array
                  maxItems: 16
                  items:
                    type: object
                    properties:
                      name: {type: string}
                      matches:
                        type: array
                        maxItems: 64
                        items:
                          type: object
                          properties:
                            path:
                              type: object
                              properties:
                                type: {type: string, enum: [Exact, PathPrefix, RegularExpression]}
                                value: {type: string, maxLength: 1024}
                            headers: {type: array, items: {type: object, x-kubernetes-preserve-unknown-fields: true}}
                            queryParams: {type: array, items: {type: object, x-kubernetes-preserve-unknown-fields: true}}
                            method: {type: string}
                      filters: {type: array, items: {type: object, x-kubernetes-preserve-unknown-fields: true}}
                      backendRefs:
                        type: array
                        maxItems: 16
                        items:
                          type: object
                          required: [name]
                          properties:
                            group: {type: string}
                            kind: {type: string}
                            name: {type: string, minLength: 1, maxLength: 253}
                            namespace: {type: string}
                            port: {type: integer, format: int32, minimum: 1, maximum: 65535}
                            weight: {type: integer, format: int32, minimum: 0, maximum: 1000000}
                            filters: {type: array, items: {type: object, x-kubernetes-preserve-unknown-fields: true}}
                      timeouts:
                        type: object
                        properties:
                          request: {type: string}
                          backendRequest: {type: string}
            status: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


def merged_values(value_set: str) -> Obj:
    """values.yaml with the value set's file merged over it, as helm merges them."""
    def merge(base: Obj, over: Obj) -> Obj:
        out = copy.deepcopy(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    return values if value_set == "default" else merge(values, yaml.safe_load(values_file(value_set).read_text()))


def values_file(value_set: str) -> Path:
    return CHART / "ci" / f"{value_set}.yaml"


def pod_spec(obj: Obj) -> Obj:
    kind = obj["kind"]
    if kind == "Pod":
        return obj["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def references(spec: Obj) -> set[tuple[str, str, str | None]]:
    """(kind, name, key or None) of every Secret, ConfigMap and claim a pod spec needs (optional ones left out)."""
    refs: set[tuple[str, str, str | None]] = set()

    def add(kind: str, source: Obj, name_field: str) -> None:
        if not source.get("optional"):
            items = source.get("items") or [{}]
            refs.update((kind, source[name_field], item.get("key")) for item in items)
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            add("Secret", volume["secret"], "secretName")
        if "configMap" in volume:
            add("ConfigMap", volume["configMap"], "name")
        if "persistentVolumeClaim" in volume:
            refs.add(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"], None))
        for projected in (volume.get("projected") or {}).get("sources") or []:
            for kind, field in (("secret", "Secret"), ("configMap", "ConfigMap")):
                if kind in projected:
                    add(field, projected[kind], "name")
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        for env in container.get("env") or []:
            for ref_kind, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                ref = (env.get("valueFrom") or {}).get(ref_kind)
                if ref and not ref.get("optional"):
                    refs.add((kind, ref["name"], ref["key"]))
        for source in container.get("envFrom") or []:
            for ref_kind, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                ref = source.get(ref_kind)
                if ref and not ref.get("optional"):
                    refs.add((kind, ref["name"], None))
    return refs


def chart_crds(cluster: Cluster) -> dict[str, tuple[str, bool]]:
    """The chart's CRDs as they are now: name -> (uid, Established)."""
    found = {}
    for name in CHART_CRDS:
        crd = cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
        if crd is not None:
            found[name] = (crd["metadata"]["uid"], any(
                c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"]))
    return found


@contextmanager
def own_namespace(control_plane: ControlPlane, workdir: Path) -> Iterator[Cluster]:
    """What the `cluster` fixture gives a test, with a kubernetes client of its own (for work in threads)."""
    with kubernetes.config.new_client_from_config(str(control_plane.kubeconfig)) as api, \
            scratch_namespace(control_plane, api, workdir) as cluster:
        yield cluster


def install_httproute_crd(cluster: Cluster) -> None:
    """The HTTPRoute CRD above, cluster-wide and left in place (idempotent; no chart CRD is touched)."""
    cluster.check(cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=HTTPROUTE_CRD))
    cluster.check(cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                                  "crd/httproutes.gateway.networking.k8s.io"))


class ChartRelease:
    """Release `mnist` of charts/mnist-platform with one value set, in the test's namespace."""

    def __init__(self, cluster: Cluster, value_set: str) -> None:
        self.cluster, self.value_set = cluster, value_set
        self.values = merged_values(value_set)
        self.volumes: list[str] = []

    # ---------------------------------------------------------------------------------------- helm

    @property
    def values_args(self) -> list[str]:
        return [] if self.value_set == "default" else ["-f", str(values_file(self.value_set))]

    def helm(self, *args: str) -> str:
        result = self.cluster.helm(*args)
        assert result.returncode == 0, f"helm {args[0]} ({self.value_set}) failed:\n{result.stderr[-3000:]}" \
            + "".join(f"\n  {line}" for line in self.warnings()[:10])
        return result.stdout

    def warnings(self) -> list[str]:
        """The namespace's Warning events, but for what this test bed always warns about (no metrics API;
        pod IPs are loopback addresses, which endpoints refuse)."""
        noise = ("FailedGetResourceMetric", "FailedComputeMetricsReplicas", "FailedToUpdateEndpoint",
                 "FailedToUpdateEndpointSlices")
        events = [e for e in self.cluster.list("v1", "Event") if e.get("type") == "Warning" and e["reason"] not in noise]
        return sorted({f"{e['reason']} {e['involvedObject']['kind']}/{e['involvedObject']['name']}: {e['message']}"
                       for e in events})

    def render(self, *extra: str) -> list[Obj]:
        text = self.helm("template", RELEASE, str(CHART), *self.values_args, *extra)
        return [doc for doc in yaml.safe_load_all(text) if doc]

    def install(self, *extra: str) -> str:
        return self.helm("install", RELEASE, str(CHART), *self.values_args, "--wait", "--timeout", TIMEOUT, *extra)

    def upgrade(self, *extra: str) -> str:
        """`helm upgrade --reset-then-reuse-values` as docs/CLUSTER.md shows it, with `extra` on top."""
        return self.helm("upgrade", RELEASE, str(CHART), "--reset-then-reuse-values", "--wait", "--timeout", TIMEOUT, *extra)

    def rollback(self, *extra: str) -> str:
        return self.helm("rollback", RELEASE, *extra, "--wait", "--timeout", TIMEOUT)

    def uninstall(self) -> str:
        return self.helm("uninstall", RELEASE, "--wait", "--timeout", TIMEOUT)

    def manifest(self) -> str:
        return self.helm("get", "manifest", RELEASE)

    # ---------------------------------------------------------------------------------------- prerequisites

    @contextmanager
    def prepared(self) -> Iterator[ChartRelease]:
        """The namespace made ready for the value set; the PersistentVolumes made for it are deleted after."""
        try:
            self.prepare()
            yield self
        finally:
            for volume in self.volumes:
                self.cluster.kubectl("delete", "persistentvolume", volume, "--wait=false")

    def prepare(self) -> None:
        cluster = self.cluster
        cluster.check(cluster.kubectl("label", "namespace", cluster.namespace, RESTRICTED))
        objects = self.render()
        if any(obj["kind"] == "HTTPRoute" for obj in objects):
            install_httproute_crd(cluster)
        for claim in (obj for obj in objects if obj["kind"] == "PersistentVolumeClaim"):
            self.volume_for(claim)
        store = self.values["modelStore"]
        if store["existingClaim"]:
            claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                     "metadata": {"name": store["existingClaim"], "namespace": cluster.namespace},
                     "spec": {"accessModes": store["accessModes"], "resources": {"requests": {"storage": store["size"]}},
                              **({"storageClassName": store["storageClass"]} if store["storageClass"] else {})}}
            self.volume_for(claim)  # first: a claim made before its volume waits for the binder's resync (15 s)
            cluster.apply(claim)
        keys = self.values["frontend"]["apiKeys"]
        if keys["existingSecret"]:
            plain = "existing-secret-test-key"
            hashed = f"sha256:{hashlib.sha256(plain.encode()).hexdigest()} smoke\n"
            data = {keys["hashedKeysKey"]: hashed, **({keys["plainKeyKey"]: plain} if keys["plainKeyKey"] else {})}
            cluster.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                           "metadata": {"name": keys["existingSecret"], "namespace": cluster.namespace},
                           "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})

    def volume_for(self, claim: Obj) -> None:
        """A hostPath PersistentVolume the claim binds to (claimRef): its class, access modes and size."""
        name = f"{self.cluster.namespace}-{claim['metadata']['name']}"
        spec = claim["spec"]
        self.cluster.apply({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "labels": {"mnist-platform.dev/test": "true"}},
            "spec": {"capacity": {"storage": spec["resources"]["requests"]["storage"]},
                     "accessModes": spec["accessModes"], "storageClassName": spec.get("storageClassName", ""),
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": f"/tmp/mnist-test-pv/{name}"},
                     "claimRef": {"namespace": self.cluster.namespace, "name": claim["metadata"]["name"]}}})
        self.volumes.append(name)

    # ---------------------------------------------------------------------------------------- checks

    def assert_healthy(self) -> None:
        """Every pod admitted, every object of the release there, every Deployment rolled out and available,
        every Secret, ConfigMap (with the keys used) and claim (Bound) a pod needs present."""
        cluster = self.cluster
        refused = [f"{e['involvedObject']['kind']}/{e['involvedObject']['name']}: {e['message']}"
                   for e in cluster.list("v1", "Event") if e.get("reason") == "FailedCreate"]
        assert not refused, f"{self.value_set}: pods refused:\n" + "\n".join(refused)
        cluster.check(cluster.kubectl("get", "-f", "-", "-o", "name", input=self.manifest()))
        deployments = wait_for(self._rolled_out, 60, f"every Deployment of {self.value_set} to roll out")
        assert deployments, f"{self.value_set}: no Deployment"
        missing = [ref for ref in sorted(self.referenced(), key=str) if not self._present(*ref)]
        assert not missing, f"{self.value_set}: pods need what is not there: {missing}"

    def _rolled_out(self) -> list[str] | None:
        names = []
        for d in self.cluster.list("apps/v1", "Deployment"):
            status, want = d.get("status") or {}, d["spec"]["replicas"]
            available = any(c["type"] == "Available" and c["status"] == "True" for c in status.get("conditions") or [])
            if not (available and status.get("observedGeneration", 0) >= d["metadata"]["generation"]
                    and status.get("replicas") == status.get("updatedReplicas") == status.get("availableReplicas")
                    == want):
                return None
            names.append(d["metadata"]["name"])
        return names

    def referenced(self) -> set[tuple[str, str, str | None]]:
        refs: set[tuple[str, str, str | None]] = set()
        for api_version, kind in (("v1", "Pod"), ("apps/v1", "Deployment"), ("batch/v1", "CronJob")):
            for obj in self.cluster.list(api_version, kind):
                refs |= references(pod_spec({**obj, "kind": kind}))
        return refs

    def _present(self, kind: str, name: str, key: str | None) -> bool:
        obj = self.cluster.get("v1", kind, name)
        if obj is None:
            return False
        if kind == "PersistentVolumeClaim":
            return (obj.get("status") or {}).get("phase") == "Bound"
        return key is None or key in (obj.get("data") or {})

    def generated_keys(self) -> dict[str, bytes]:
        """The keys the chart generates (API key, feedback-token key): Secret/key -> value."""
        keys = {}
        if not self.values["frontend"]["apiKeys"]["existingSecret"]:
            keys[f"{PREFIX}-api-keys/{self.values['frontend']['apiKeys']['plainKeyKey']}"] = b""
        if self.values["frontend"]["sharedFeedbackKey"]:
            keys[f"{PREFIX}-feedback-key/feedback-key"] = b""
        for ref in keys:
            name, key = ref.split("/")
            secret = self.cluster.get("v1", "Secret", name)
            keys[ref] = base64.b64decode(secret["data"][key]) if secret else b""
        return keys

    def configmap_data(self) -> dict[str, Obj | None]:
        """The operator's two ConfigMaps' data now (None: no such ConfigMap)."""
        found = {name: self.cluster.get("v1", "ConfigMap", name) for name in OPERATOR_WRITES}
        return {name: (cm.get("data") or {}) if cm else None for name, cm in found.items()}

    def operator_writes(self) -> dict[str, Obj]:
        """Patch both ConfigMaps as the operator does after a rollout; returns their data."""
        for name, data in OPERATOR_WRITES.items():
            self.cluster.check(self.cluster.kubectl("patch", "configmap", name, "--type=merge",
                                                    "--field-manager=mnist-operator", "-p", json.dumps({"data": data})))
        return {name: dict(data) for name, data in OPERATOR_WRITES.items()}

    def image(self, component: str, tag: str | None = None) -> str:
        """The image a component's pods run with these values (tag: the chart's appVersion unless given)."""
        image = self.values[component]["image"]
        app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
        return f"{image['repository']}:{tag or image['tag'] or app_version}"

    def pod_images(self, component: str) -> set[str]:
        """Images of the live (not terminating) pods of a component."""
        pods = self.cluster.list("v1", "Pod", label_selector=f"app.kubernetes.io/component={component}")
        return {c["image"] for p in pods if "deletionTimestamp" not in p["metadata"] for c in p["spec"]["containers"]}
