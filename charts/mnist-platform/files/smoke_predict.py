"""Send one real MNIST digit to POST /v1/predict and check the answer (helm test and `make smoke`).

Standard library only: it runs in the frontend image (helm test) and on the host (make smoke).
Retries until --wait-s passes, because the first model version may still be loading.
Exit 0 and one line on success; one line and exit 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def find_digit(reply: Any) -> int | None:
    """The predicted digit of the first image, wherever the frontend's JSON puts it."""
    if isinstance(reply, dict):
        if isinstance(reply.get("digit"), int):
            return reply["digit"]
        for key in ("predictions", "outputs", "results"):
            if key in reply:
                return find_digit(reply[key])
    if isinstance(reply, list) and reply:
        return find_digit(reply[0])
    return None


def predict_once(url: str, api_key: str, body: bytes, timeout_s: float) -> tuple[int, Any]:
    request = urllib.request.Request(
        url.rstrip("/") + "/v1/predict",
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="frontend base URL, e.g. http://mnist-platform-frontend")
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--api-key", help="plain API key")
    key.add_argument("--api-key-file", type=Path, help="file holding the plain API key")
    parser.add_argument("--body", type=Path, required=True, help="JSON request body (smoke-digit.json)")
    parser.add_argument("--expect", type=int, required=True, help="digit the image shows")
    parser.add_argument("--wait-s", type=float, default=120.0, help="keep retrying this long")
    args = parser.parse_args(argv)

    api_key = args.api_key if args.api_key is not None else args.api_key_file.read_text().strip()
    body = args.body.read_bytes()
    deadline = time.monotonic() + args.wait_s
    last = "no attempt"
    while True:
        try:
            status, reply = predict_once(args.url, api_key, body, timeout_s=10.0)
            if status == 200:
                digit = find_digit(reply)
                if digit == args.expect:
                    print(f"ok: {args.url} predicted {digit}")
                    return 0
                print(f"FAIL: {args.url} predicted {digit}, expected {args.expect}: {json.dumps(reply)[:300]}")
                return 1
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
