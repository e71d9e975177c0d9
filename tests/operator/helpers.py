"""A deterministic simulated world for the pure rollout core: traffic that follows the routing decide() wrote.

Counts are exact fractions of a request rate (no randomness), so every scenario is reproducible. This is for the
pure core only; local mode is tested against a real frontend in test_local_e2e.py.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from mnist_operator import analysis as an
from mnist_operator import merge_patch
from mnist_operator.decide import TERMINAL, CandidateInfo, Decision, Observation, decide
from mnist_operator.render import routing_document

START = 1_800_000_000.0
KEY = "default/mnist-v2"


@dataclass
class Behaviour:
    error_rate: float = 0.0
    latency_s: float = 0.02
    accuracy: float = 0.97
    agreement: float = 0.995  # shadow: share of digits equal to stable's


def bucket_of(latency_s: float) -> int:
    return next(i for i, b in enumerate(an.LATENCY_BUCKETS) if latency_s <= b)


@dataclass
class World:
    spec: dict[str, Any]
    behaviours: dict[int, Behaviour] = field(default_factory=lambda: {1: Behaviour(), 2: Behaviour()})
    stable: int | None = 1  # None: nothing serves yet (a fresh install: no routing document in place)
    rps: float = 40.0
    feedback_share: float = 1.0
    now: float = START
    candidate: CandidateInfo = field(default_factory=lambda: CandidateInfo(True, 0.98, True, "test"))
    # Facts about the other versions (the stable one): every version with a behaviour is published and AVAILABLE
    # unless set here; a version with neither is not found (like stableVersion: 99 in the issue).
    version_facts: dict[int, CandidateInfo] = field(default_factory=dict)
    metrics_up: bool = True
    pods: dict[str, an.PodCounters] = field(default_factory=lambda: {"pod-a": an.PodCounters(),
                                                                    "pod-b": an.PodCounters()})
    status: dict[str, Any] | None = None
    generation: int = 1
    blocked_by: str | None = None
    frontends_follow: bool = True
    decisions: list[Decision] = field(default_factory=list)
    serving: Any = None

    def __post_init__(self) -> None:
        self.routing: dict[str, Any] | None = None if self.stable is None else {
            "model": "mnist", "strategy": "single", "routes": [{"version": self.stable, "label": "stable", "weight": 100}],
            "sticky_header": None, "shadow": None, "rollout": None, "generation": 1}
        self.loaded_generation = 1

    # --- traffic -----------------------------------------------------------------------------------------------
    def traffic(self, dt: float) -> None:
        if self.routing is None:
            return  # nothing serves: no prediction succeeds, no counter moves
        n_total = self.rps * dt
        per_pod = n_total / len(self.pods)
        shadow = self.routing.get("shadow")
        for pod in self.pods.values():
            for r in self.routing["routes"]:
                v, n = r["version"], per_pod * r["weight"] / 100.0
                if n <= 0:
                    continue
                b = self.behaviours[v]
                key = str(v)
                pod.requests[f"{v}|ok"] = pod.requests.get(f"{v}|ok", 0.0) + n * (1 - b.error_rate)
                pod.requests[f"{v}|backend_error"] = pod.requests.get(f"{v}|backend_error", 0.0) + n * b.error_rate
                hist = pod.latency.setdefault(key, [0.0] * len(an.LATENCY_BUCKETS))
                for i in range(bucket_of(b.latency_s), len(hist)):
                    hist[i] += n
                fb = n * (1 - b.error_rate) * self.feedback_share
                pod.feedback[f"{v}|correct"] = pod.feedback.get(f"{v}|correct", 0.0) + fb * b.accuracy
                pod.feedback[f"{v}|wrong"] = pod.feedback.get(f"{v}|wrong", 0.0) + fb * (1 - b.accuracy)
                if shadow and v != shadow["version"]:
                    sv, sn = shadow["version"], n * shadow["percent"] / 100.0
                    sb = self.behaviours[sv]
                    base = f"{v}|{sv}|"
                    ok = sn * (1 - sb.error_rate)
                    pod.shadow[base + "agree"] = pod.shadow.get(base + "agree", 0.0) + ok * sb.agreement
                    pod.shadow[base + "disagree"] = pod.shadow.get(base + "disagree", 0.0) + ok * (1 - sb.agreement)
                    pod.shadow[base + "error"] = pod.shadow.get(base + "error", 0.0) + sn * sb.error_rate
                    sh = pod.shadow_latency.setdefault(str(sv), [0.0] * len(an.LATENCY_BUCKETS))
                    for i in range(bucket_of(sb.latency_s), len(sh)):
                        sh[i] += sn
            if self.frontends_follow:
                pod.routing_generation = float(self.routing["generation"])

    def restart_pod(self, name: str) -> None:
        self.pods[name] = an.PodCounters(routing_generation=float(self.routing["generation"]))

    def snapshot(self) -> an.Snapshot | None:
        if not self.metrics_up:
            return an.Snapshot(taken_at=self.now, errors=["down"])
        pods = {k: an.PodCounters.from_json(json.loads(json.dumps(v.to_json()))) for k, v in self.pods.items()}
        return an.Snapshot(taken_at=self.now, pods=pods)

    # --- operator ----------------------------------------------------------------------------------------------
    def observation(self) -> Observation:
        versions = {v: self.version_facts.get(v, CandidateInfo(True, 0.97, True, "test"))
                    for v in {*self.behaviours, *self.version_facts}}
        return Observation(rollout=KEY, generation=self.generation, metrics=self.snapshot(), candidate=self.candidate,
                           current_routing=copy.deepcopy(self.routing), blocked_by=self.blocked_by, versions=versions)

    def tick(self, dt: float = 1.0) -> Decision:
        self.traffic(dt)
        self.now += dt
        persisted = json.loads(json.dumps(self.status)) if self.status is not None else None
        self.last_obs = self.observation()
        d = decide(self.spec, persisted, self.last_obs, self.now)
        # What the API server stores: the shell's merge patch (null deletes) applied to the status in place.
        stored = self.status or {}
        self.status = merge_patch.apply(stored, json.loads(json.dumps(merge_patch.diff(stored, d.status))))
        if d.routing is not None:
            self.routing = routing_document(d.routing, d.routing_generation)
        if d.serving is not None:
            self.serving = d.serving
        self.decisions.append(d)
        return d

    def run(self, max_s: float, dt: float = 1.0) -> dict[str, Any]:
        end = self.now + max_s
        while self.now < end:
            self.tick(dt)
            if self.phase in TERMINAL:
                break
        return self.status or {}

    @property
    def phase(self) -> str | None:
        return (self.status or {}).get("phase")

    @property
    def reasons(self) -> list[str]:
        return [e.reason for d in self.decisions for e in d.events]

    def weight(self, version: int) -> int:
        return sum(r["weight"] for r in (self.routing or {}).get("routes", []) if r["version"] == version)


def canary_spec(**over: Any) -> dict[str, Any]:
    spec = {"model": "mnist", "candidateVersion": 2, "strategy": "canary",
            "canary": {"steps": [10, 50, 100], "stepDuration": "10s"},
            "analysis": {"interval": "3s", "minRequests": 5, "minFeedback": 5, "failureLimit": 2,
                         "inconclusiveTimeout": "20s", "routingTimeout": "5s"},
            "gate": {"minOfflineAccuracy": 0.9, "timeout": "10s"}}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(spec.get(k), dict):
            spec[k] = {**spec[k], **v}
        else:
            spec[k] = v
    return spec
