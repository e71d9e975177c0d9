"""A refused Kubernetes API call, as the operator's shell reports it: the server's words, bounded; the Degraded
condition; the backoff; and what it does when it may not even patch the status. (End to end, on the real API
server with a Role that lacks a verb: tests/operator_e2e/test_rbac.py.)"""

from __future__ import annotations

import json
import logging
import threading
from types import SimpleNamespace
from typing import Any

import kopf
import pytest
from kubernetes.client.rest import ApiException
from mnist_operator import cluster_facts, handlers
from mnist_operator.decide import ts

FORBIDDEN = ('configmaps "mnist-routing" is forbidden: User "system:serviceaccount:ml:op" cannot patch resource '
             '"configmaps" in API group "" in the namespace "ml"')


def api_exception(status: int, reason: str, body: Any) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = body
    return exc


def status_body(message: str, code: int = 403) -> str:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                       "reason": "Forbidden", "details": {"name": "mnist-routing", "kind": "configmaps"},
                       "code": code})


@pytest.mark.parametrize("body", [status_body(FORBIDDEN), status_body(FORBIDDEN).encode()])
def test_api_error_text_is_the_servers_message_naming_verb_and_resource(body: Any) -> None:
    assert handlers.api_error_text(api_exception(403, "Forbidden", body)) == FORBIDDEN


@pytest.mark.parametrize(("body", "expected"), [
    (None, "Forbidden"), ("", "Forbidden"), ("not json\n  at all", "not json at all"),
    (json.dumps({"kind": "Status"}), '{"kind": "Status"}'), (json.dumps(["a"]), '["a"]'),
])
def test_api_error_text_without_a_status_message_falls_back_to_the_body_then_the_reason(body: Any,
                                                                                      expected: str) -> None:
    assert handlers.api_error_text(api_exception(403, "Forbidden", body)) == expected


def test_api_error_text_is_one_bounded_line_whatever_the_server_says() -> None:
    text = handlers.api_error_text(api_exception(500, "Internal", status_body("x\n" * 10_000, 500)))
    assert len(text) == cluster_facts.API_MESSAGE_LIMIT and text.endswith("...") and "\n" not in text
    assert handlers.api_error_text(api_exception(0, None, None)) == "no message"


def test_reason_names_a_forbidden_call_apart_from_other_errors() -> None:
    assert handlers.api_error_reason(api_exception(403, "Forbidden", None)) == "APIForbidden"
    assert [handlers.api_error_reason(api_exception(s, "x", None)) for s in (401, 409, 422, 500)] == ["APIError"] * 4


def test_retries_back_off_to_every_30_seconds() -> None:
    assert [handlers.retry_delay(n) for n in range(1, 8)] == [2, 4, 8, 16, 30, 30, 30]


CONDITIONS = [
    {"type": "Ready", "status": "False", "reason": "InProgress", "message": "m", "lastTransitionTime": "t0"},
    {"type": "Progressing", "status": "True", "reason": "Gate", "message": "m", "lastTransitionTime": "t0"},
    {"type": "Degraded", "status": "False", "reason": "Healthy", "message": "m", "lastTransitionTime": "t0"},
]


def test_refused_call_sets_degraded_and_keeps_the_other_conditions_in_place() -> None:
    out = handlers.refused_conditions(CONDITIONS, "APIForbidden", "HTTP 403: " + FORBIDDEN, 1_800_000_000.0)
    assert out[:2] == CONDITIONS[:2]
    assert out[2] == {"type": "Degraded", "status": "True", "reason": "APIForbidden",
                      "message": "HTTP 403: " + FORBIDDEN, "lastTransitionTime": ts(1_800_000_000.0)}
    # Still degraded by a new message: the transition time stays that of the first.
    again = handlers.refused_conditions(out, "APIError", "HTTP 500: x", 1_800_000_100.0)
    assert again[2]["lastTransitionTime"] == ts(1_800_000_000.0) and again[2]["reason"] == "APIError"


@pytest.mark.parametrize("conditions", [None, [], "junk", [None, "x"]])
def test_refused_call_on_a_rollout_without_conditions_adds_degraded(conditions: Any) -> None:
    (only,) = handlers.refused_conditions(conditions, "APIForbidden", "m", 0.0)
    assert (only["type"], only["status"], only["reason"]) == ("Degraded", "True", "APIForbidden")


class FakeCustom:
    def __init__(self, refuse: ApiException | None = None) -> None:
        self.refuse, self.patches = refuse, []

    def patch_namespaced_custom_object_status(self, *args: Any) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.patches.append(args)


def with_clients(monkeypatch: pytest.MonkeyPatch, custom: Any = None, core: Any = None) -> None:
    monkeypatch.setattr(handlers, "clients", lambda: SimpleNamespace(custom=custom, core=core, cfg=None))


def test_refusal_is_recorded_as_a_merge_patch_of_the_conditions(monkeypatch: pytest.MonkeyPatch) -> None:
    custom = FakeCustom()
    with_clients(monkeypatch, custom)
    handlers._record_refusal(threading.Lock(), "ml", "r", CONDITIONS, "APIForbidden", "HTTP 403: m",
                             logging.getLogger("t"))
    ((group, _, namespace, plural, name, body),) = custom.patches
    assert (group, namespace, plural, name) == ("ml.mnist-platform.dev", "ml", "modelrollouts", "r")
    assert list(body) == ["status"] and list(body["status"]) == ["conditions"]
    assert body["status"]["conditions"][2]["reason"] == "APIForbidden"


def test_refusal_that_may_not_be_recorded_in_the_status_is_logged_with_the_servers_words(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    denied = 'modelrollouts.ml.mnist-platform.dev "r" is forbidden: User "u" cannot patch resource ' \
             '"modelrollouts/status"'
    with_clients(monkeypatch, FakeCustom(api_exception(403, "Forbidden", status_body(denied))))
    with caplog.at_level(logging.WARNING):
        handlers._record_refusal(threading.Lock(), "ml", "r", [], "APIForbidden", "m", logging.getLogger("t"))
    assert f"cannot record the refused call in the rollout's status either: HTTP 403: {denied}" in caplog.text


def test_a_refused_call_of_the_delete_finalizer_is_retried_with_the_servers_words(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf posts a TemporaryError's text as the Event; a bare ApiException gave kopf a multi-line repr."""
    refused = api_exception(403, "Forbidden", status_body(FORBIDDEN))

    def restore(*_: Any) -> None:
        raise refused
    monkeypatch.setattr(handlers, "clients", lambda: None)
    monkeypatch.setattr(handlers, "_restore_on_delete", restore)
    memo = SimpleNamespace()
    with pytest.raises(kopf.TemporaryError) as caught:
        handlers.rollout_deleted(name="r", namespace="ml", status={}, body={}, memo=memo,
                                 logger=logging.getLogger("t"))
    assert str(caught.value) == f"HTTP 403: {FORBIDDEN}" and caught.value.delay == 10
    assert not memo.tick_lock.locked(), "the tick lock is released"
