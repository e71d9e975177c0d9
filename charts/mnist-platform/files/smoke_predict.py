"""Send a real MNIST digit to POST /v1/predict and check the answer (helm test, `make smoke`, `make rollout`).

Standard library only: it runs in the frontend image (helm test) and on the host (make smoke).
Retries until --wait-s passes, because the first model version may still be loading.
With --requests N it then keeps sending (bounded in count, rate and time) and, with --feedback, reports
the true label back, which is the live traffic a rollout's analysis judges.
Exit 0 and one line on success; one line and exit 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any


def first_prediction(reply: Any) -> dict[str, Any]:
    """`predictions[0]` of a /v1/predict answer ({} when the answer is not shaped like one)."""
    predictions = reply.get("predictions") if isinstance(reply, dict) else None
    if isinstance(predictions, list) and predictions and isinstance(predictions[0], dict):
        return predictions[0]
    return {}


def post_json(url: str, path: str, api_key: str, body: bytes, timeout_s: float) -> tuple[int, Any]:
    request = urllib.request.Request(
        url.rstrip("/") + path,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-API-Key": api_key},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, None


def send_traffic(args: argparse.Namespace, api_key: str, body: bytes) -> int:
    """--requests predictions at most --rate per second for at most --max-s, with feedback if asked."""
    versions: Counter[str] = Counter()
    errors = 0
    started = time.monotonic()
    for sent in range(args.requests):
        if time.monotonic() - started > args.max_s:
            break
        try:
            status, reply = post_json(args.url, "/v1/predict", api_key, body, timeout_s=10.0)
        except (OSError, ValueError):
            status, reply = 0, None
        if status != 200:
            errors += 1
        else:
            versions[str(reply.get("version"))] += 1
            prediction = first_prediction(reply)
            if args.feedback and prediction.get("feedback_token"):
                feedback = {"request_id": reply.get("request_id"), "label": args.expect,
                            "feedback_token": prediction["feedback_token"]}
                try:
                    post_json(args.url, "/v1/feedback", api_key, json.dumps(feedback).encode(), timeout_s=10.0)
                except (OSError, ValueError):
                    errors += 1
        time.sleep(max(0.0, started + (sent + 1) / args.rate - time.monotonic()))
    total = sum(versions.values())
    print(f"{'ok' if total else 'FAIL'}: {total} predictions by version {dict(versions)}, {errors} errors")
    return 0 if total else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="frontend base URL, e.g. http://mnist-platform-frontend")
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--api-key", help="plain API key")
    key.add_argument("--api-key-file", type=Path, help="file holding the plain API key")
    parser.add_argument("--body", type=Path, required=True, help="JSON request body (smoke-digit.json)")
    parser.add_argument("--expect", type=int, required=True, help="digit the image shows")
    parser.add_argument("--wait-s", type=float, default=120.0, help="keep retrying this long")
    parser.add_argument("--requests", type=int, default=1, help="predictions to send after the first good one")
    parser.add_argument("--rate", type=float, default=5.0, help="at most this many requests per second")
    parser.add_argument("--max-s", type=float, default=600.0, help="stop sending after this many seconds")
    parser.add_argument("--feedback", action="store_true", help="send the true label back for each prediction")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.rate <= 0 or args.max_s <= 0:
        parser.error("--requests, --rate and --max-s must be positive")

    api_key = args.api_key if args.api_key is not None else args.api_key_file.read_text().strip()
    body = args.body.read_bytes()
    deadline = time.monotonic() + args.wait_s
    last = "no attempt"
    while True:
        try:
            status, reply = post_json(args.url, "/v1/predict", api_key, body, timeout_s=10.0)
            if status == 200:
                digit = first_prediction(reply).get("digit")
                if digit != args.expect:
                    print(f"FAIL: {args.url} predicted {digit}, expected {args.expect}: {json.dumps(reply)[:300]}")
                    return 1
                if args.requests == 1 and not args.feedback:
                    print(f"ok: {args.url} predicted {digit} (version {reply.get('version')})")
                    return 0
                return send_traffic(args, api_key, body)
            last = f"HTTP {status}: {json.dumps(reply)[:300]}"
            if 400 <= status < 500 and status not in (404, 429):
                break  # our request is wrong (bad key, bad body): retrying cannot help
        except (OSError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            break
        time.sleep(3.0)
    print(f"FAIL: {args.url}: {last}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
