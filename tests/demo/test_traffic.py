"""The traffic generator: real MNIST digits as PNG, bounded count and time, loopback only, lost requests counted."""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from scripts.demo.ports import free_port
from scripts.demo.traffic import (
    TrafficGenerator,
    answer_request_id,
    answer_version,
    feedback_token,
    load_test_digits,
    png_bytes,
    predicted_digit,
    require_loopback,
)


def test_png_round_trips_an_mnist_digit(mnist_npz):
    with np.load(mnist_npz) as data:
        digit = data["x_test"][0]
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(digit))))
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, digit)


def test_test_digits_are_real_labelled_mnist_test_images(mnist_npz):
    digits = load_test_digits(mnist_npz, count=50, seed=3)
    assert len(digits) == 50 and len({d.image_b64 for d in digits}) == 50
    with np.load(mnist_npz) as data:
        x_test, y_test = data["x_test"], data["y_test"]
    first = np.asarray(Image.open(io.BytesIO(base64.b64decode(digits[0].image_b64))))
    matches = np.flatnonzero((x_test == first).all(axis=(1, 2)))
    assert len(matches) >= 1 and digits[0].label in set(int(y_test[i]) for i in matches)


@pytest.mark.parametrize("url", ["http://10.0.0.1:8080", "http://example.com", "http://0.0.0.0:80"])
def test_traffic_only_goes_to_loopback(url):
    with pytest.raises(ValueError, match="loopback"):
        require_loopback(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:8080"])
def test_loopback_urls_are_accepted(url):
    require_loopback(url)


class Recorder(BaseHTTPRequestHandler):
    """A loopback HTTP endpoint that records what the generator sends (protocol shape only, not the frontend)."""

    received: list[tuple[str, dict]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            self.received.append((self.path, body))
            count = len(self.received)
            predicts = sum(1 for path, _ in self.received if path == "/v1/predict")
        # Alternate versions by predict count, so both versions answer whatever the feedback interleaving.
        answer = {
            "request_id": f"r{count}",
            "version": 1 + predicts % 2,
            "predictions": [{"digit": 7, "feedback_token": f"t{count}"}],
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def recorder():
    Recorder.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_sends_exactly_max_requests_and_feeds_the_true_label_back(recorder, mnist_npz):
    digits = load_test_digits(mnist_npz, count=5, seed=0)
    generator = TrafficGenerator(recorder, digits, rate_per_s=200, max_requests=12, concurrency=3).start()
    generator.join(timeout_s=30)
    stats = generator.stop()
    predicts = [body for path, body in Recorder.received if path == "/v1/predict"]
    feedback = [body for path, body in Recorder.received if path == "/v1/feedback"]
    assert stats.sent == len(predicts) == 12 and stats.lost == 0 and stats.statuses == {200: 12}
    assert sum(stats.by_version.values()) == 12 and set(stats.by_version) == {"1", "2"}
    assert stats.feedback_sent == len(feedback) == 12 and stats.feedback_failed == 0
    assert stats.feedback_by_version == stats.by_version
    labels_by_image = {d.image_b64: d.label for d in digits}
    assert all(body["image"] in labels_by_image for body in predicts)
    answered_ids = {f"r{i + 1}" for i, (path, _) in enumerate(Recorder.received) if path == "/v1/predict"}
    assert {b["request_id"] for b in feedback} == answered_ids
    assert all(b["feedback_token"] == "t" + b["request_id"][1:] for b in feedback)
    assert {b["label"] for b in feedback} <= set(labels_by_image.values())


def test_stops_at_the_time_budget(recorder, mnist_npz):
    digits = load_test_digits(mnist_npz, count=3)
    generator = TrafficGenerator(recorder, digits, rate_per_s=10, max_requests=10_000, max_seconds=0.5).start()
    generator.join(timeout_s=30)
    assert not generator.running
    # Slots at 0, 0.1, ... 0.5 s: six at most.
    assert 1 <= generator.snapshot().sent <= 6


def test_requests_with_no_answer_are_counted_as_lost(mnist_npz):
    digits = load_test_digits(mnist_npz, count=2)
    closed = f"http://127.0.0.1:{free_port()}"
    generator = TrafficGenerator(closed, digits, rate_per_s=100, max_requests=5, concurrency=1).start()
    generator.join(timeout_s=30)
    stats = generator.stop()
    assert stats.sent == stats.lost == 5 and stats.feedback_sent == 0 and stats.last_error


def test_answer_fields_are_read_from_headers_first_then_body():
    assert answer_version({"version": 3}, {}) == "3"
    assert answer_version({"version": 3}, {"X-Model-Version": "4"}) == "4"
    assert answer_version({}, {}) == ""
    assert answer_request_id({"request_id": "abc"}, {}) == "abc"
    assert predicted_digit({"predictions": [{"digit": 5}]}) == 5
    assert predicted_digit({}) is None
    assert feedback_token({"predictions": [{"digit": 5, "feedback_token": "v1.x"}]}) == "v1.x"
    assert feedback_token({"predictions": []}) is None
