"""`mnist-operator local`: argument and file errors (one line, exit 2) and the decision/progress output."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mnist_operator.cli import main
from mnist_operator.local import LocalError, LocalOptions, atomic_write, load_rollout, progress_line, run_local

ROOT = Path(__file__).resolve().parents[2]


def fake_store(tmp_path: Path, versions: tuple[int, ...]) -> Path:
    """A model store whose versions pass the gate (test accuracy 0.97) without real SavedModels."""
    store = tmp_path / "models" / "mnist"
    for v in versions:
        (store / str(v) / "assets.extra").mkdir(parents=True)
        (store / str(v) / "saved_model.pb").write_bytes(b"")
        (store / str(v) / "assets.extra" / "metrics.json").write_text(json.dumps({"test_accuracy": 0.97}))
    return store


def write_rollout(tmp_path: Path, name: str, spec: dict) -> Path:
    rollout = tmp_path / "r.yaml"
    rollout.write_text(yaml.safe_dump({"apiVersion": "ml.mnist-platform.dev/v1alpha1", "kind": "ModelRollout",
                                       "metadata": {"name": name}, "spec": spec}))
    return rollout


def test_help_lists_both_commands_and_the_environment():
    out = subprocess.run([sys.executable, "-m", "mnist_operator.cli", "run", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "MNIST_OPERATOR_ROUTING_CONFIGMAP" in out and "--namespace" in out
    out = subprocess.run([sys.executable, "-m", "mnist_operator.cli", "local", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--metrics-url" in out and "--serving-rest" in out


@pytest.mark.parametrize("content, message", [
    ("kind: ModelRollout\napiVersion: ml.mnist-platform.dev/v1alpha1\nspec: {model: mnist}\n", "candidateVersion"),
    ("kind: ConfigMap\n", "exactly one ModelRollout"),
    ("{unclosed", "not valid YAML"),
])
def test_bad_rollout_files_are_one_line_and_exit_2(tmp_path, capsys, content, message):
    f = tmp_path / "r.yaml"
    f.write_text(content)
    code = main(["local", "--rollout", str(f), "--routing-file", str(tmp_path / "routing.json"),
                 "--serving-config", str(tmp_path / "models.config"), "--metrics-url", "http://127.0.0.1:9/metrics"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "routing.json").exists(), "a refused rollout must change nothing"


def test_missing_rollout_file_is_one_line(tmp_path, capsys):
    code = main(["local", "--rollout", str(tmp_path / "nope.yaml"), "--routing-file", "r", "--serving-config", "s",
                 "--metrics-url", "http://127.0.0.1:9/metrics"])
    assert code == 2 and "cannot read" in capsys.readouterr().err


def test_every_example_loads_in_local_mode():
    for name in ("canary.yaml", "abtest.yaml", "shadow.yaml"):
        assert load_rollout(ROOT / "k8s" / "examples" / name)["kind"] == "ModelRollout"
    with pytest.raises(LocalError, match="invalid spec"):
        load_rollout(ROOT / "k8s" / "examples" / "invalid" / "weight-150.yaml")


def test_atomic_write_replaces_and_reports_unchanged(tmp_path):
    p = tmp_path / "sub" / "f.json"
    assert atomic_write(p, "a") and p.read_text() == "a"
    assert not atomic_write(p, "a")
    assert atomic_write(p, "b") and p.read_text() == "b"
    assert [x.name for x in p.parent.iterdir()] == ["f.json"], "no temp file left behind"


def test_progress_line_shows_step_weights_and_numbers():
    line = progress_line({"phase": "Progressing", "stage": "Canary", "step": 1, "candidateWeight": 25,
                          "failedChecks": 0,
                          "lastAnalysis": {"candidate": {"version": 2, "requests": 40, "errorRate": 0.0,
                                                         "p99Ms": 12.3, "accuracy": 0.975},
                                           "stable": {"version": 1, "requests": 120, "errorRate": 0.0,
                                                      "p99Ms": None, "accuracy": None}}}, 4)
    assert "step 2/4" in line and "candidate 25%" in line and "v2: 40 req" in line and "acc 0.975" in line


def test_unreachable_metrics_hold_then_fail_with_exit_1_and_stable_restored(tmp_path, capsys):
    """No frontend at the metrics URL: the rollout holds (inconclusive), then fails after the timeout."""
    store = fake_store(tmp_path, (1, 2))
    rollout = write_rollout(tmp_path, "t", {
        "model": "mnist", "candidateVersion": 2, "stableVersion": 1,
        "analysis": {"interval": "200ms", "inconclusiveTimeout": "1s", "routingTimeout": "300ms"}})
    routing, serving, status = tmp_path / "routing.json", tmp_path / "models.config", tmp_path / "status.json"
    out = io.StringIO()
    code = run_local(LocalOptions(rollout=rollout, routing_file=routing, serving_config=serving,
                                  metrics_urls=["http://127.0.0.1:9/metrics"], model_base_path=store, tick_s=0.05,
                                  timeout_s=30, status_file=status, http_timeout_s=0.2), out=out)
    assert code == 1
    assert "Failed reason: MetricsUnavailable" in capsys.readouterr().err
    assert "MetricsUnavailable: holding: no frontend metrics reachable" in out.getvalue()
    doc = json.loads(routing.read_text())
    assert doc["routes"] == [{"version": 1, "label": "stable", "weight": 100}] and doc["rollout"] == "default/t"
    assert "versions: 1\n" in serving.read_text() and "versions: 2" not in serving.read_text()
    assert json.loads(status.read_text())["phase"] == "Failed"


def test_model_store_defaults_to_the_base_path_in_the_serving_config_in_place(tmp_path):
    from mnist_operator.local import base_path_in_config
    from mnist_operator.render import ServingState, render_model_config

    store = tmp_path / "models" / "mnist"
    store.mkdir(parents=True)
    cfg = tmp_path / "models.config"
    cfg.write_text(render_model_config([ServingState("other", "/nowhere", (1,)), ServingState("mnist", str(store), (1,))]))
    assert base_path_in_config(cfg, "mnist") == store
    assert base_path_in_config(cfg, "other") is None  # not a directory here
    assert base_path_in_config(tmp_path / "missing", "mnist") is None


def test_local_mode_restarted_with_its_status_file_continues_without_a_traffic_jump(tmp_path, capsys):
    store = fake_store(tmp_path, (1, 2))
    rollout = write_rollout(tmp_path, "t", {
        "model": "mnist", "candidateVersion": 2, "stableVersion": 1, "canary": {"steps": [25, 100]},
        "analysis": {"interval": "200ms", "inconclusiveTimeout": "1h"}})
    routing, status = tmp_path / "routing.json", tmp_path / "status.json"

    def run(timeout_s: float) -> int:
        return run_local(LocalOptions(rollout=rollout, routing_file=routing, serving_config=tmp_path / "models.config",
                                      metrics_urls=["http://127.0.0.1:9/metrics"], model_base_path=store, tick_s=0.05,
                                      timeout_s=timeout_s, status_file=status, http_timeout_s=0.1), out=io.StringIO())

    assert run(0.6) == 3  # stopped mid-step (no metrics: holding at 25%)
    first = json.loads(routing.read_text())
    held = json.loads(status.read_text())
    assert [(r["version"], r["weight"]) for r in first["routes"]] == [(1, 75), (2, 25)]
    assert run(0.3) == 3  # "restarted": continues from the status file
    again = json.loads(routing.read_text())
    assert again == first, "a restart must rewrite the very same routing (same generation: no reload, no jump)"
    after = json.loads(status.read_text())
    assert (after["stage"], after["step"], after["stepStartedAt"]) == (held["stage"], held["step"], held["stepStartedAt"])
    assert "Timeout" in capsys.readouterr().err


def test_local_mode_with_nothing_served_yet_makes_the_candidate_the_initial_stable_version(tmp_path):
    """No routing file yet: the gate, then v2 alone, labelled stable and given all traffic; exit 0, InitialVersion."""
    store = fake_store(tmp_path, (2,))
    rollout = write_rollout(tmp_path, "first", {"model": "mnist", "candidateVersion": 2,
                                                "analysis": {"routingTimeout": "300ms"}})
    routing, serving, status = tmp_path / "routing.json", tmp_path / "models.config", tmp_path / "status.json"
    out = io.StringIO()
    code = run_local(LocalOptions(rollout=rollout, routing_file=routing, serving_config=serving,
                                  metrics_urls=["http://127.0.0.1:9/metrics"], model_base_path=store, tick_s=0.05,
                                  timeout_s=30, status_file=status, http_timeout_s=0.1), out=out)
    text = out.getvalue()
    assert code == 0, text
    assert ("InitialVersion: no version served yet: v2 becomes stable after passing the gate, nothing to compare "
            "against") in text
    assert "Promoted reason: v2 is stable: the initial version of mnist" in text and "CanaryStep" not in text
    doc = json.loads(routing.read_text())
    assert doc["routes"] == [{"version": 2, "label": "stable", "weight": 100}] and doc["rollout"] == "default/first"
    config = serving.read_text()
    assert "versions: 2\n" in config and 'version_labels { key: "stable" value: 2 }' in config
    final = json.loads(status.read_text())
    assert final["phase"] == "Promoted" and final["reason"] == "InitialVersion" and "stableVersion" not in final


def test_local_mode_refuses_a_stable_version_not_in_the_store_and_writes_nothing(tmp_path, capsys):
    """The issue: `stableVersion: 99` sent most traffic to a version not in the store (503s, frontends unready)."""
    store = fake_store(tmp_path, (1, 2))
    rollout = write_rollout(tmp_path, "t", {"model": "mnist", "candidateVersion": 2, "stableVersion": 99,
                                            "gate": {"timeout": "300ms"}})
    routing, serving, status = tmp_path / "routing.json", tmp_path / "models.config", tmp_path / "status.json"
    before = '{"model": "mnist", "strategy": "single", "routes": [{"version": 1, "label": "stable", "weight": 100}]}'
    routing.write_text(before)
    out = io.StringIO()
    code = run_local(LocalOptions(rollout=rollout, routing_file=routing, serving_config=serving,
                                  metrics_urls=["http://127.0.0.1:9/metrics"], model_base_path=store, tick_s=0.05,
                                  timeout_s=30, status_file=status, http_timeout_s=0.1), out=out)
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("Failed reason: StableNotFound: stable v99 not found after"), err
    assert "Warning StableNotFound: stable v99 not found" in out.getvalue()
    assert routing.read_text() == before and not serving.exists(), "nothing may be written"
    assert json.loads(status.read_text())["reason"] == "StableNotFound"


def test_local_mode_checks_the_stable_version_the_routing_file_serves(tmp_path, capsys):
    store = fake_store(tmp_path, (2,))  # v1 serves according to the routing file, but the store lacks it
    rollout = write_rollout(tmp_path, "t", {"model": "mnist", "candidateVersion": 2, "gate": {"timeout": "300ms"}})
    routing = tmp_path / "routing.json"
    routing.write_text('{"model": "mnist", "strategy": "single", "routes": [{"version": 1, "label": "stable", '
                       '"weight": 100}]}')
    code = run_local(LocalOptions(rollout=rollout, routing_file=routing, serving_config=tmp_path / "models.config",
                                  metrics_urls=["http://127.0.0.1:9/metrics"], model_base_path=store, tick_s=0.05,
                                  timeout_s=30, http_timeout_s=0.1), out=io.StringIO())
    assert code == 1 and "Failed reason: StableNotFound: stable v1 not found" in capsys.readouterr().err
