"""`mnist-operator local`: argument and file errors (one line, exit 2) and the decision/progress output."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


# --- hostile rollout files: one line on stderr, exit 2, fast, nothing written ------------------------------------

HEADER = "apiVersion: ml.mnist-platform.dev/v1alpha1\nkind: ModelRollout\n"
# The 500-byte alias bomb: 9 levels of 9 references, 9^9 strings once anything walks it (the old error
# message's repr did: most of a minute, gigabytes of memory, hundreds of MB on stderr).
BOMB = HEADER + "metadata: {name: bomb}\na: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
) + "spec: {model: *i, candidateVersion: 2}\n"

HOSTILE = {
    "alias bomb": BOMB,
    "one alias": HEADER + "metadata: &m {name: x}\nother: *m\nspec: {model: mnist, candidateVersion: 2}\n",
    "deep flow nesting": HEADER + "spec: " + "[" * 8_000 + "]" * 8_000 + "\n",
    "deep block nesting": HEADER + "spec:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 160)),
    "metadata a list": HEADER + "metadata: [1]\nspec: {model: mnist, candidateVersion: 2}\n",
    "metadata a string": HEADER + "metadata: hello\nspec: {model: mnist, candidateVersion: 2}\n",
    "generation not an integer": HEADER + "metadata: {name: x, generation: abc}\nspec: {model: mnist, candidateVersion: 2}\n",
    "generation a float": HEADER + "metadata: {name: x, generation: 1.5}\nspec: {model: mnist, candidateVersion: 2}\n",
    "generation zero": HEADER + "metadata: {name: x, generation: 0}\nspec: {model: mnist, candidateVersion: 2}\n",
    "name a list": HEADER + "metadata: {name: [1, 2]}\nspec: {model: mnist, candidateVersion: 2}\n",
    "name with a newline": HEADER + 'metadata: {name: "a\\nb"}\nspec: {model: mnist, candidateVersion: 2}\n',
    "namespace too long": HEADER + f"metadata: {{name: x, namespace: {'n' * 64}}}\nspec: {{model: mnist, candidateVersion: 2}}\n",
    "huge integer": HEADER + f"spec: {{model: mnist, candidateVersion: 1{'0' * 5000}}}\n",
    "impossible date": HEADER + "metadata: {name: x, creationTimestamp: 2001-02-30}\nspec: {model: mnist, candidateVersion: 2}\n",
    "long unknown fields": HEADER + "spec: {model: mnist, candidateVersion: 2, " + ", ".join(
        f"{'k' * 200}{i}: 1" for i in range(70)) + "}\n",
    "long model": HEADER + f"spec: {{model: {'m' * 16_000}, candidateVersion: 2}}\n",
    # The slowest inputs for the pure-Python parser found (at 64 KiB: 2.4 s, 0.4 s, 0.95 s): now cut by the node
    # bound or by the size bound.
    "many nodes": HEADER + "metadata: {name: x}\njunk: [" + "1," * 8_000 + "1]\nspec: {model: mnist, candidateVersion: 2}\n",
    "many complex keys": HEADER + "junk:\n" + "? a\n: b\n" * 2_000 + "spec: {model: mnist, candidateVersion: 2}\n",
    "many tag directives": "".join(f"%TAG !t{i}! tag:x,2000:\n" for i in range(600)) + "---\n" + HEADER + "x: 1\n",
    "blank lines": HEADER + "spec: {model: mnist, candidateVersion: 0}\n" + "\n" * 16_000,
    "not UTF-8": b"\xff\xfe\xfdspec: \x80\x81\n",
    "binary": bytes(range(256)) * 8,
    "api version a list": "apiVersion: [1]\nkind: ModelRollout\nspec: {model: mnist, candidateVersion: 2}\n",
    "kind a mapping key": "{kind: ModelRollout}: 1\n",
    "python tag": HEADER + "spec: !!python/object/apply:os.system [echo hi]\n",
}


def run_cli(tmp_path: Path, rollout: Path) -> tuple[int, str, float]:
    """The CLI in a child process with 1 GiB of address space, so a regression fails fast instead of swapping."""
    code = ("import resource, sys, time\n"
            "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from mnist_operator.cli import main\n"
            "t = time.perf_counter(); rc = main(sys.argv[1:])\n"
            "print(f'{time.perf_counter() - t:.3f}'); sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, "local", "--rollout", str(rollout), "--routing-file",
                           str(tmp_path / "routing.json"), "--serving-config", str(tmp_path / "models.config"),
                           "--metrics-url", "http://127.0.0.1:9/metrics"], capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stderr, float(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else -1.0


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_rollout_file_is_one_short_line_and_exit_2_in_under_a_second(tmp_path, capsys, name):
    f = tmp_path / "r.yaml"
    content = HOSTILE[name]
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    started = time.perf_counter()
    code = main(["local", "--rollout", str(f), "--routing-file", str(tmp_path / "routing.json"),
                 "--serving-config", str(tmp_path / "models.config"), "--metrics-url", "http://127.0.0.1:9/metrics"])
    took = time.perf_counter() - started
    err = capsys.readouterr().err
    assert code == 2, err[:500]
    assert err.startswith("mnist-operator local: ") and err.endswith("\n") and err.count("\n") == 1, err[:500]
    assert len(err) <= 600 and took < 1.0, (len(err), took)
    assert not (tmp_path / "routing.json").exists() and not (tmp_path / "models.config").exists()


@pytest.mark.parametrize("name", ["alias bomb", "one alias", "deep block nesting", "many nodes", "many complex keys",
                                  "many tag directives", "blank lines", "python tag", "huge integer"])
def test_the_pure_python_yaml_fallback_refuses_them_too_in_under_a_second(tmp_path, monkeypatch, name):
    """Without libyaml (PyYAML built without it) the same checks run on the pure-Python parser's events.

    Not "deep flow nesting": that parser's scanner is quadratic in open flow levels within its 1024-character
    look-ahead for simple keys, so 16 KiB of `[[[[` takes 0.4 s on a free core and 1.7 s was seen on the loaded
    2-core machine (bounded, but not under a second). PyYAML's wheels bundle libyaml, which this test's siblings use.
    """
    import mnist_operator.local as local

    monkeypatch.setattr(local, "YAML_LOADER", yaml.SafeLoader)
    f = tmp_path / "r.yaml"
    f.write_text(HOSTILE[name])
    started = time.perf_counter()
    with pytest.raises(LocalError) as info:
        load_rollout(f)
    assert time.perf_counter() - started < 1.0 and len(str(info.value)) <= 500


def test_the_alias_bomb_is_refused_by_the_cli_in_a_process_of_bounded_memory(tmp_path):
    f = tmp_path / "bomb.yaml"
    f.write_text(BOMB)
    assert len(BOMB) < 600
    code, err, took = run_cli(tmp_path, f)
    assert code == 2 and err.count("\n") == 1 and "alias" in err and len(err) < 600, err[:500]
    assert 0 <= took < 1.0


@pytest.mark.parametrize("size", [16 * 1024 + 1, 50 * 1024 * 1024])
def test_a_huge_rollout_file_is_refused_without_reading_it_whole(tmp_path, capsys, size):
    f = tmp_path / "huge.yaml"
    with f.open("wb") as out:
        out.write(HEADER.encode() + b"spec: {model: mnist, candidateVersion: 2}\n# ")
        out.truncate(size)  # sparse: the size is real, the disk is not used
    started = time.perf_counter()
    with pytest.raises(LocalError, match="larger than 16 KiB"):
        load_rollout(f)
    assert time.perf_counter() - started < 1.0


def test_the_largest_accepted_file_loads_in_under_a_second(tmp_path):
    body = HEADER + "metadata: {name: big}\nspec: {model: mnist, candidateVersion: 2}\n"
    f = tmp_path / "big.yaml"
    f.write_text(body + "# " + "x" * (16 * 1024 - len(body) - 3) + "\n")
    assert f.stat().st_size == 16 * 1024
    started = time.perf_counter()
    assert load_rollout(f)["metadata"]["name"] == "big"
    assert time.perf_counter() - started < 1.0


YAML_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10) | st.integers(), inner,
                                                                max_size=4),
    max_leaves=30)


@settings(max_examples=200, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(junk=st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    st.text(alphabet="{}[]:,-&*!|>'\"#%@` \n\tabc01.", max_size=200),  # YAML's syntax characters
    YAML_JUNK.map(lambda v: yaml.safe_dump({"apiVersion": "ml.mnist-platform.dev/v1alpha1", "kind": "ModelRollout",
                                            "metadata": v, "spec": {"model": "mnist", "candidateVersion": 2}})),
    YAML_JUNK.map(lambda v: yaml.safe_dump({"apiVersion": "ml.mnist-platform.dev/v1alpha1", "kind": "ModelRollout",
                                            "spec": v})),
))
def test_junk_rollout_files_load_or_are_one_line_local_errors(tmp_path_factory, junk):
    f = tmp_path_factory.mktemp("junk") / "r.yaml"
    f.write_bytes(junk if isinstance(junk, bytes) else junk.encode("utf-8", "surrogatepass"))
    try:
        obj = load_rollout(f)
    except LocalError as exc:
        assert "\n" not in str(exc) and len(str(exc)) <= 500, str(exc)[:600]
    else:
        assert obj["kind"] == "ModelRollout"


def test_a_status_file_that_is_not_one_this_tool_wrote_is_exit_2(tmp_path, capsys):
    store = fake_store(tmp_path, (1, 2))
    rollout = write_rollout(tmp_path, "t", {"model": "mnist", "candidateVersion": 2, "stableVersion": 1})
    for bad in ("[1, 2]", "{not json", '{"phase": "Progressing", "stage": "Canary", "stepStartedAt": "yesterday", '
                '"lastCheckAt": 5, "stableVersion": 1, "candidateVersion": 2, "model": "mnist"}', "[" * 100_000):
        status = tmp_path / "status.json"
        status.write_text(bad)
        code = main(["local", "--rollout", str(rollout), "--routing-file", str(tmp_path / "routing.json"),
                     "--serving-config", str(tmp_path / "models.config"), "--metrics-url",
                     "http://127.0.0.1:9/metrics", "--model-base-path", str(store), "--status-file", str(status),
                     "--timeout", "5"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "status" in err and len(err) < 600, (bad[:40], err[:300])
        assert not (tmp_path / "routing.json").exists()


def test_every_event_printed_is_also_a_json_line_in_the_events_file(tmp_path, capsys):
    """--events-file is for programs (the demo): the same events as the console lines, one JSON object each."""
    store = fake_store(tmp_path, (1, 2))
    rollout = write_rollout(tmp_path, "t", {
        "model": "mnist", "candidateVersion": 2, "stableVersion": 1,
        "analysis": {"interval": "200ms", "inconclusiveTimeout": "1s", "routingTimeout": "300ms"}})
    events, out = tmp_path / "events.jsonl", io.StringIO()
    code = run_local(LocalOptions(rollout=rollout, routing_file=tmp_path / "routing.json",
                                  serving_config=tmp_path / "models.config", metrics_urls=["http://127.0.0.1:9/metrics"],
                                  model_base_path=store, tick_s=0.05, timeout_s=30, events_file=events,
                                  http_timeout_s=0.2), out=out)
    assert code == 1
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert [r["reason"] for r in records][:2] == ["Created", "GatePassed"] and records[-1]["type"] == "Warning"
    printed = [line for line in out.getvalue().splitlines() if line[:8].count(":") == 2]
    assert printed == [f"{r['time']} {r['type']:<7} {r['reason']}: {r['message']}" for r in records]
