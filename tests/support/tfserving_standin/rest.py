"""TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest) and its Prometheus page.

Paths, JSON shapes, error bodies ({"error": "..."}) and status codes follow the real server
(tensorflow_serving/model_servers/http_rest_api_handler.cc, http_rest_api_util.cc, json_tensor.cc).
HTTP/1.1 with keep-alive.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from .core import ServingCore, elapsed_us, status_name
from .errors import ServingError, invalid_argument
from .grpc_service import model_status_response
from .model import LoadedModel
from .tensors import columnar_response, inputs_to_arrays, instances_to_arrays, row_response

log = logging.getLogger("tfserving_standin")

PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
_V1 = re.compile(r"/v1/.*", re.IGNORECASE)
_PREDICT = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
                      re.IGNORECASE)
_STATUS = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
                     re.IGNORECASE)
_INT64_MAX = 2**63 - 1


def _model_spec(name: str, version: str | None, label: str | None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=unquote(name))
    if version:
        if int(version) > _INT64_MAX:
            raise invalid_argument(f"Failed to convert version: {version} to numeric.")
        spec.version.value = int(version)
    if label:
        spec.version_label = unquote(label)
    return spec


def handle_v1(core: ServingCore, method: str, path: str, body: bytes) -> tuple[str, dict[str, Any]]:
    """One /v1/... call: returns (model name for metrics, JSON body); raises ServingError."""
    if method == "POST" and (match := _PREDICT.fullmatch(path)):
        name, version, label, verb = match.groups()
        spec = _model_spec(name, version, label)
        if verb.lower() != "predict":
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                               f"The stand-in serves predict only, not {verb}")
        return spec.name, _predict(core, spec, body)
    if method == "GET" and (match := _STATUS.fullmatch(path)):
        name, version, label, subresource = match.groups()
        if not name:
            raise invalid_argument("Missing model name in request.")
        spec = _model_spec(name, version, label)
        if subresource:
            request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            request.model_spec.CopyFrom(spec)
            return spec.name, _metadata_json(core.metadata(request))
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
        response = model_status_response(core, request)
        return spec.name, json.loads(json_format.MessageToJson(response, always_print_fields_with_no_presence=True))
    raise invalid_argument(f"Malformed request: {method} {path}")


def _metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> dict[str, Any]:
    """{"model_spec": ..., "metadata": {"signature_def": ...}} with proto field names, as TF Serving prints it."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)

    def as_json(message: Any) -> Any:
        return json.loads(json_format.MessageToJson(message, preserving_proto_field_name=True,
                                                    always_print_fields_with_no_presence=True))

    return {"model_spec": as_json(response.model_spec), "metadata": {"signature_def": as_json(signature_map)}}


def _predict(core: ServingCore, spec: model_pb2.ModelSpec, body: bytes) -> dict[str, Any]:
    """:predict with "instances" (row) or "inputs" (columnar); the response uses the same format."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise invalid_argument(f"JSON Parse error: {getattr(exc, 'msg', exc)} at offset: "
                               f"{getattr(exc, 'pos', 0)}") from None
    if not isinstance(document, dict):
        raise invalid_argument(f"JSON Value: {json.dumps(document)[:80]} Is not object")
    signature_name = document.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid_argument("JSON Value: not formatted correctly. 'signature_name' key must be a string value.")
    spec.signature_name = signature_name
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise invalid_argument("JSON Value: Not formatted correctly expecting only one of 'inputs' or "
                               "'instances' keys to exist ")

    def make_inputs(model: LoadedModel):
        dtypes = model.input_dtypes(signature_name)
        if has_instances:
            return instances_to_arrays(document["instances"], dtypes)
        if has_inputs:
            return inputs_to_arrays(document["inputs"], dtypes)
        raise invalid_argument("Missing 'inputs' or 'instances' key")

    _, _, outputs = core.predict(spec, "REST", make_inputs)
    return row_response(outputs) if has_instances else columnar_response(outputs)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RestServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the base class
        log.debug("REST %s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._dispatch("OPTIONS")

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        path = urlsplit(self.path).path
        core = self.server.core
        if self.server.prometheus_path and path == self.server.prometheus_path:
            self._reply(200, core.metrics.render().encode(), "text/plain")
            return
        if not _V1.fullmatch(path):
            self._reply(404, b"<HTML><HEAD><TITLE>404 Not Found</TITLE></HEAD><BODY><H1>Not Found</H1></BODY></HTML>",
                        "text/html")
            return
        if method == "OPTIONS":
            origin = self.headers.get("Origin", "")
            ok = re.match(r"https?://", origin) is not None
            self._reply(200 if ok else 400, b"" if ok else
                        b'{ "error": "Origin header is missing in CORS preflight" }', "application/json")
            return
        started = time.monotonic()
        model_name = ""
        error: ServingError | None = None
        try:
            model_name, document = handle_v1(core, method, path, body)
        except ServingError as exc:
            error = exc
            match = _PREDICT.fullmatch(path) or _STATUS.fullmatch(path)
            model_name = unquote(match.group(1) or "") if match else ""
        core.metrics.record_request(model_name, status_name(error))
        if error is not None:
            self._reply(error.http_status, json.dumps({"error": error.message}).encode(), "application/json")
            return
        api = _PREDICT.fullmatch(path).group(4).lower() if method == "POST" else ""
        core.metrics.record_latency(model_name, api, "REST", elapsed_us(started))
        self._reply(200, json.dumps(document, indent=1).encode(), "application/json")

    def _read_body(self) -> bytes:
        """The request body, sized by Content-Length or sent chunked (both are HTTP/1.1)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _reply(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class RestServer(ThreadingHTTPServer):
    """A threading HTTP/1.1 server that can drop its open keep-alive connections (for the "down" fault)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, core: ServingCore, port: int, prometheus_path: str | None, host: str = "127.0.0.1") -> None:
        self.core = core
        self.prometheus_path = prometheus_path
        self._connections: set[socket.socket] = set()
        self._connections_mu = threading.Lock()
        super().__init__((host, port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"standin-rest-{self.server_address[1]}", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_mu:
            (self._connections.add if add else self._connections.discard)(connection)

    def close_all(self) -> None:
        """Stop accepting, close the listening socket and every open connection."""
        self.shutdown()
        self.server_close()
        with self._connections_mu:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
