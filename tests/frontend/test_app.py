"""frontend.app: request ids, security headers, and X-Forwarded-* honoured only when configured."""

from __future__ import annotations

from flask import request


def _echo_app(make_app, **config):
    app = make_app(**config)

    @app.get("/whoami")
    def whoami():
        return {"remote": request.remote_addr, "scheme": request.scheme, "host": request.host}

    return app.test_client()


def test_forwarded_headers_ignored_by_default(make_app):
    body = _echo_app(make_app).get("/whoami", headers={"X-Forwarded-For": "203.0.113.9",
                                                       "X-Forwarded-Proto": "https"}).json
    assert body["remote"] == "127.0.0.1" and body["scheme"] == "http"


def test_forwarded_headers_from_one_trusted_proxy(make_app):
    client = _echo_app(make_app, TRUST_PROXY=1)
    body = client.get("/whoami", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9",
                                          "X-Forwarded-Proto": "https", "X-Forwarded-Host": "mnist.example"}).json
    assert body == {"remote": "203.0.113.9", "scheme": "https", "host": "mnist.example"}


def test_every_response_has_request_id_and_security_headers(client):
    for response in (client.get("/healthz"), client.get("/nope"), client.post("/v1/predict", data=b"x")):
        assert len(response.headers["X-Request-Id"]) == 32
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
