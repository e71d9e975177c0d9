"""frontend.feedback: signed tokens (any worker can verify) and the per-worker LRU/TTL store."""

from __future__ import annotations

import base64
import gc
import hmac

from frontend.feedback import Answer, AnswerStore, new_prediction_id, sign, verify

KEY = b"k" * 32
ANSWER = Answer(model="mnist", version=2, digit=7, issued=1_000_000, prediction="p-1")


def test_token_round_trip():
    token = sign(KEY, "req-1", 0, ANSWER)
    assert verify(KEY, token, "req-1", 0, "mnist", now=1_000_010, ttl_s=3600) == ANSWER


def test_token_is_bound_to_key_request_index_model_and_time():
    token = sign(KEY, "req-1", 0, ANSWER)
    assert verify(b"x" * 32, token, "req-1", 0, "mnist", 1_000_010, 3600) is None
    assert verify(KEY, token, "req-2", 0, "mnist", 1_000_010, 3600) is None
    assert verify(KEY, token, "req-1", 1, "mnist", 1_000_010, 3600) is None
    assert verify(KEY, token, "req-1", 0, "fashion", 1_000_010, 3600) is None
    assert verify(KEY, token, "req-1", 0, "mnist", 1_000_000 + 3601, 3600) is None  # expired


def test_tampered_tokens_are_refused():
    token = sign(KEY, "req-1", 0, ANSWER)
    version_changed = token.replace(".2.7.", ".3.7.", 1)
    assert verify(KEY, version_changed, "req-1", 0, "mnist", 1_000_010, 3600) is None
    prediction_changed = token.replace("v2.p-1.", "v2.p-2.", 1)
    assert verify(KEY, prediction_changed, "req-1", 0, "mnist", 1_000_010, 3600) is None
    mac = token.rsplit(".", 1)[1]
    for bad in ("", "v2", "v2.a.b.c.d.e", "v2.p.1.2.7.1000000." + mac, "v2.p.q.2.7.1000000." + mac,
                "v1.2.7.1000000." + mac, "v3.p-1.2.7.1000000." + mac, token + "x"):
        assert verify(KEY, bad, "req-1", 0, "mnist", 1_000_010, 3600) is None


def test_one_request_id_on_two_predictions_gives_two_prediction_ids():
    # The request id is the caller's X-Request-Id and may repeat; the prediction id is the server's own.
    ids = {new_prediction_id() for _ in range(1000)}
    assert len(ids) == 1000 and all("." not in i and len(i) == 16 for i in ids)
    first = sign(KEY, "same", 0, ANSWER)
    second = sign(KEY, "same", 0, Answer("mnist", 2, 7, 1_000_000, prediction="p-2"))
    assert verify(KEY, first, "same", 0, "mnist", 1_000_010, 3600).prediction == "p-1"
    assert verify(KEY, second, "same", 0, "mnist", 1_000_010, 3600).prediction == "p-2"


def test_a_token_of_the_previous_release_still_verifies_keyed_on_its_request_id():
    # v1 tokens (no prediction id) stay valid for their lifetime: feedback sent during a rolling update counts.
    message = "\n".join(["v1", "mnist", "req-1", "0", "2", "7", "1000000"]).encode()
    mac = base64.urlsafe_b64encode(hmac.digest(KEY, message, "sha256")).rstrip(b"=").decode()
    answer = verify(KEY, f"v1.2.7.1000000.{mac}", "req-1", 0, "mnist", 1_000_010, 3600)
    assert answer == Answer("mnist", 2, 7, 1_000_000, prediction="req-1")
    assert verify(KEY, f"v1.2.7.1000000.{mac}", "req-2", 0, "mnist", 1_000_010, 3600) is None


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_store_is_bounded_and_expires():
    clock = Clock()
    store = AnswerStore(max_entries=3, ttl_s=10, clock=clock)
    for i in range(5):
        store.put(f"r{i}", (ANSWER,))
    assert len(store) == 3 and store.get("r0", 0) is None and store.get("r4", 0) == ANSWER
    assert store.get("r4", 1) is None
    clock.now = 11
    assert store.get("r4", 0) is None
    store.put("new", (ANSWER,))
    assert len(store) == 1  # expired entries were dropped on the way


def test_a_request_id_used_again_names_its_latest_prediction():
    store = AnswerStore(max_entries=10, ttl_s=10, clock=Clock())
    store.put("same", (ANSWER,))
    store.put("same", (Answer("mnist", 2, 4, 1_000_001, prediction="p-2"),))
    assert store.get("same", 0).prediction == "p-2" and store.get("same", 0).digit == 4


def test_claim_counts_each_feedback_once():
    store = AnswerStore(max_entries=10, ttl_s=10, clock=Clock())
    assert store.claim("r1", 0) is True
    assert store.claim("r1", 0) is False
    assert store.claim("r1", 1) is True


def test_a_full_store_adds_nothing_the_garbage_collector_must_scan():
    # Thousands of answers live for the TTL; held as plain tuples, the collector stops tracking them, so its
    # full passes (which pause the worker) do not grow with the store.
    store = AnswerStore(max_entries=5000, ttl_s=10, clock=Clock())
    gc.collect()
    before = len(gc.get_objects())
    for i in range(5000):
        store.put(f"request-{i}", tuple(Answer("mnist", 2, digit, 1_000_000 + i, f"p{i}") for digit in range(4)))
        store.claim(f"request-{i}", 0)
    gc.collect()
    gc.collect()  # a tuple is untracked once the tuples inside it are: it may take a second pass
    assert len(store) == 5000 and store.get("request-4999", 3) == Answer("mnist", 2, 3, 1_004_999, "p4999")
    assert len(gc.get_objects()) - before < 1000  # 30,000 when each answer was an object
