"""`mnist-client`: predict image files or MNIST test digits through the frontend, or straight at TF Serving.

    mnist-client predict digit.png --url http://localhost:8080 --api-key KEY
    mnist-client predict --index 0 --index 1 --serving-grpc localhost:8500 --version 2
    mnist-client feedback REQUEST_ID 7 --token TOKEN
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import requests

from frontend.errors import FrontendError

DEFAULT_URL = os.environ.get("MNIST_URL", "http://127.0.0.1:8080")


class ClientError(Exception):
    """A problem to report in one line, with an exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def read_inputs(files: list[str], indices: list[int], data_path: str) -> tuple[list[str], list[tuple[str, bytes]],
                                                                                list[np.ndarray], list[int | None]]:
    """Names, image files (name, bytes), MNIST arrays and true labels (None for files)."""
    names, images, arrays, labels = [], [], [], []
    for file in files:
        try:
            images.append((Path(file).name, Path(file).read_bytes()))
        except OSError as exc:
            raise ClientError(f"cannot read {file}: {exc.strerror}", 2) from None
        names.append(file)
        labels.append(None)
    if indices:
        try:
            with np.load(data_path) as data:
                x_test, y_test = data["x_test"], data["y_test"]
        except (OSError, KeyError, ValueError) as exc:
            raise ClientError(f"cannot read MNIST from {data_path}: {exc}", 2) from None
        for index in indices:
            if not 0 <= index < len(x_test):
                raise ClientError(f"MNIST test index {index} is outside 0..{len(x_test) - 1}", 2)
            arrays.append(x_test[index])
            names.append(f"mnist-test[{index}]")
            labels.append(int(y_test[index]))
    return names, images, arrays, labels


def via_frontend(url: str, api_key: str | None, images: list[tuple[str, bytes]], arrays: list[np.ndarray],
                 timeout: float) -> list[dict[str, Any]]:
    headers = {"X-API-Key": api_key} if api_key else {}
    answers = []
    try:
        if images:
            files = [("file", (name, data, "application/octet-stream")) for name, data in images]
            answers.append(_check(requests.post(f"{url.rstrip('/')}/v1/predict", files=files, headers=headers,
                                                timeout=timeout)))
        if arrays:
            payload = {"instances": [a.astype(int).tolist() for a in arrays]}
            answers.append(_check(requests.post(f"{url.rstrip('/')}/v1/predict", json=payload, headers=headers,
                                                timeout=timeout)))
    except requests.ConnectionError:
        raise ClientError(f"cannot reach the frontend at {url}", 2) from None
    except requests.Timeout:
        raise ClientError(f"the frontend at {url} did not answer within {timeout:g} s", 2) from None
    rows = []
    for answer in answers:
        for index, prediction in enumerate(answer["predictions"]):
            rows.append({**prediction, "index": index, "version": answer["version"], "route": answer["route"],
                         "request_id": answer["request_id"]})
    return rows


def _check(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
        raise ClientError(f"{response.status_code} {error.get('code', 'error')}: "
                          f"{error.get('message', response.text[:200])}")
    if not isinstance(body, dict):
        raise ClientError("the server's answer is not JSON")
    return body


def direct(kind: str, target: str, model: str, version: int | None, images: list[tuple[str, bytes]],
           arrays: list[np.ndarray], timeout: float, max_pixels: int = 16_000_000) -> list[dict[str, Any]]:
    """Preprocess here (as the frontend would) and call TF Serving itself over gRPC or REST."""
    from frontend.preprocess import image_to_mnist

    try:
        batch = [image_to_mnist(data, max_pixels) for _, data in images]
    except FrontendError as error:
        raise ClientError(error.message, 2) from None
    batch += [(a.astype(np.float32) / 255.0)[..., None] for a in arrays]
    if kind == "grpc":
        from frontend.backends.grpc_backend import GrpcBackend

        backend = GrpcBackend(target, model)
    else:
        from frontend.backends.rest import RestBackend

        backend = RestBackend(target, model)
    try:
        result = backend.predict(np.stack(batch), version, timeout)
    except FrontendError as error:
        raise ClientError(f"TF Serving at {target}: {error.message}", 2) from None
    finally:
        backend.close()
    return [{"digit": int(d), "confidence": float(p[d]), "probabilities": [round(float(x), 6) for x in p],
             "index": i, "version": result.version, "route": None, "request_id": None}
            for i, (d, p) in enumerate(zip(result.digits, result.probabilities, strict=True))]


def feedback(url: str, api_key: str | None, request_id: str, label: int, token: str | None, index: int,
             timeout: float) -> dict[str, Any]:
    headers = {"X-API-Key": api_key} if api_key else {}
    payload: dict[str, Any] = {"request_id": request_id, "label": label, "index": index}
    if token:
        payload["feedback_token"] = token
    try:
        return _check(requests.post(f"{url.rstrip('/')}/v1/feedback", json=payload, headers=headers, timeout=timeout))
    except requests.ConnectionError:
        raise ClientError(f"cannot reach the frontend at {url}", 2) from None
    except requests.Timeout:
        raise ClientError(f"the frontend at {url} did not answer within {timeout:g} s", 2) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnist-client", description=__doc__.split("\n", 1)[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=DEFAULT_URL, help="frontend base URL [MNIST_URL] (default %(default)s)")
    common.add_argument("--api-key", default=os.environ.get("MNIST_API_KEY"), help="API key [MNIST_API_KEY]")
    common.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default %(default)s)")
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", parents=[common], help="predict images or MNIST test digits")
    predict.add_argument("files", nargs="*", help="PNG or JPEG files")
    predict.add_argument("--index", type=int, action="append", default=[], help="MNIST test digit (repeatable)")
    predict.add_argument("--data", default=os.environ.get("MNIST_DATA", "data/mnist.npz"),
                         help="MNIST .npz for --index [MNIST_DATA]")
    direct_group = predict.add_mutually_exclusive_group()
    direct_group.add_argument("--serving-grpc", metavar="HOST:PORT", help="talk to TF Serving over gRPC directly")
    direct_group.add_argument("--serving-rest", metavar="URL", help="talk to TF Serving over REST directly")
    predict.add_argument("--model", default="mnist", help="model name at TF Serving (direct mode)")
    predict.add_argument("--version", type=int, default=None, help="exact model version (direct mode)")
    fb = commands.add_parser("feedback", parents=[common], help="tell the true label of an earlier prediction")
    fb.add_argument("request_id")
    fb.add_argument("label", type=int, choices=range(10), metavar="LABEL")
    fb.add_argument("--token", help="feedback_token from the prediction")
    fb.add_argument("--index", type=int, default=0, help="position of the image in its batch")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "feedback":
            answer = feedback(args.url, args.api_key, args.request_id, args.label, args.token, args.index, args.timeout)
            print(json.dumps(answer) if args.json else
                  f"{'counted' if answer['counted'] else 'already counted'}: version {answer['version']} was "
                  f"{'right' if answer['correct'] else 'wrong'}")
            return
        if not args.files and not args.index:
            raise ClientError("give image files and/or --index N", 2)
        names, images, arrays, labels = read_inputs(args.files, args.index, args.data)
        if args.serving_grpc or args.serving_rest:
            kind, target = ("grpc", args.serving_grpc) if args.serving_grpc else ("rest", args.serving_rest)
            rows = direct(kind, target, args.model, args.version, images, arrays, args.timeout)
        else:
            rows = via_frontend(args.url, args.api_key, images, arrays, args.timeout)
    except ClientError as error:
        print(f"mnist-client: {error}", file=sys.stderr)
        raise SystemExit(error.status) from None
    for name, label, row in zip(names, labels, rows, strict=True):
        row["input"] = name
        if label is not None:
            row["label"] = label
    if args.json:
        print(json.dumps(rows))
        return
    for row in rows:
        truth = f" (true {row['label']})" if "label" in row else ""
        route = f" route {row['route']}" if row["route"] else ""
        print(f"{row['input']}: {row['digit']} ({100 * row['confidence']:.1f}%){truth} version {row['version']}{route}")


if __name__ == "__main__":
    main()
