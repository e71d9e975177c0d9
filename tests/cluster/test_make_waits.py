"""`make train` stops as soon as the training Job fails, and `make rollout` as soon as the rollout ends, each with
the reason (scripts/cluster_wait.py, called by mk/cluster.mk).

The decisions are pure functions, tested on the objects' shapes; on the real control plane, the real `make train`
against a release whose training Job cannot run (a node selector no node has, a 3 s deadline: the Job controller
fails it with DeadlineExceeded) returns within seconds instead of its 45-minute timeout, and the wait on a
ModelRollout returns at Promoted / RolledBack / Failed, set through the status subresource as the operator does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from scripts import cluster_wait
from scripts.sim.control_plane import TOOLS_BIN
from tests.cluster.chart_release import PREFIX, REPO_ROOT, ChartRelease
from tests.support.cluster import Cluster

MR = ("ml.mnist-platform.dev/v1alpha1", "ModelRollout")


def job(conditions: list[dict], **status: int) -> dict:
    return {"metadata": {"name": "train-1"}, "status": {"conditions": conditions, **status}}


def test_job_outcome_reads_the_conditions() -> None:
    failed = cluster_wait.job_outcome(job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                           "message": "Job has reached the specified backoff limit"}], failed=2))
    assert failed == cluster_wait.Outcome(True, False, "job/train-1 failed: BackoffLimitExceeded: Job has reached "
                                                       "the specified backoff limit")
    assert cluster_wait.job_outcome(job([{"type": "Complete", "status": "True"}])).ok
    running = cluster_wait.job_outcome(job([{"type": "Failed", "status": "False"}], active=1))
    assert not running.done and running.line == "job/train-1: 1 running, 0 failed pod(s)"


@pytest.mark.parametrize(("phase", "ok"), [("Promoted", True), ("RolledBack", False), ("Failed", False)])
def test_rollout_outcome_ends_at_the_three_terminal_phases(phase: str, ok: bool) -> None:
    status = {"phase": phase, "reason": "LowAccuracy", "message": "2 consecutive failed checks"}
    result = cluster_wait.rollout_outcome({"metadata": {"name": "mnist-v2-canary"}, "status": status})
    assert result == cluster_wait.Outcome(True, ok, f"modelrollout/mnist-v2-canary {phase}: LowAccuracy: 2 "
                                                    "consecutive failed checks")
    going = cluster_wait.rollout_outcome({"metadata": {"name": "x"}, "status": {"phase": "Progressing",
                                                                               "stage": "Canary", "candidateWeight": 25}})
    assert not going.done and going.line == "modelrollout/x Progressing (Canary, candidate 25%)"


def test_wait_returns_at_the_outcome_prints_changes_and_times_out() -> None:
    said: list[str] = []
    states = iter([{"status": {"phase": "Pending"}}, {"status": {"phase": "Pending"}},
                   {"status": {"phase": "RolledBack", "reason": "HighErrorRate"}}])
    now = [0.0]
    code = cluster_wait.wait(lambda: next(states), cluster_wait.rollout_outcome, 60, said.append, clock=lambda: now[0],
                             sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert code == 1 and said == ["modelrollout/? Pending", "modelrollout/? RolledBack: HighErrorRate"]
    code = cluster_wait.wait(lambda: {"status": {"phase": "Progressing"}}, cluster_wait.rollout_outcome, 10,
                             said.append, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert code == 3 and said[-1].startswith("still not done after 10 s")


def test_durations_are_the_makefiles() -> None:
    assert [cluster_wait.duration_s(t) for t in ("45m", "20m", "90s", "1h", "300")] == [2700, 1200, 90, 3600, 300]
    with pytest.raises(ValueError, match="not a duration"):
        cluster_wait.duration_s("soon")


def make(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **cluster.env(), "PATH": f"{TOOLS_BIN}:{os.environ['PATH']}"}
    return subprocess.run(["make", "--no-print-directory", *args, f"NAMESPACE={cluster.namespace}",
                           f"KUBECTL={TOOLS_BIN / 'kubectl'}", f"PYTHON={sys.executable}"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_make_train_stops_at_the_failed_job_with_its_reason(cluster: Cluster) -> None:
    with ChartRelease(cluster, "default").prepared() as release:
        release.install("--set", "trainer.runAtInstall=false", "--set", "trainer.activeDeadlineSeconds=3",
                        "--set", "trainer.backoffLimit=0", "--set-json", 'trainer.nodeSelector={"no-such-node": "x"}')
        started = time.monotonic()
        result = make(cluster, "train")
        took = time.monotonic() - started
    assert result.returncode != 0, result.stdout
    assert "failed: DeadlineExceeded" in result.stdout, result.stdout + result.stderr
    assert took < 120, f"make train took {took:.0f} s: it waited past the failure"
    assert f"{PREFIX}-trainer" in result.stdout


@pytest.mark.parametrize(("phase", "code"), [("Promoted", 0), ("RolledBack", 1), ("Failed", 1)])
def test_rollout_wait_returns_at_the_terminal_phase_with_the_reason(cluster: Cluster, phase: str, code: int) -> None:
    cluster.check(cluster.kubectl("apply", "-f", str(REPO_ROOT / "k8s" / "examples" / "canary.yaml")))
    waiting = subprocess.Popen(
        [sys.executable, "-m", "scripts.cluster_wait", "rollout", "mnist-v2-canary", "-n", cluster.namespace,
         "--timeout", "20m", "--kubectl", str(TOOLS_BIN / "kubectl")],
        cwd=REPO_ROOT, env={**os.environ, **cluster.env()}, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        cluster.patch_status(*MR, "mnist-v2-canary", {"phase": phase, "reason": "Why", "message": json.dumps(phase)})
        out, _ = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert waiting.returncode == code and f"mnist-v2-canary {phase}: Why" in out, out
