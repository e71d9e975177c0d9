"""frontend.error_handlers: every error is JSON {"error": {"code", "message"}} with the right status."""

from __future__ import annotations

import pytest
from frontend import errors
from frontend.error_handlers import status_for


@pytest.mark.parametrize("error, status", [
    (errors.InvalidInput("x"), 400), (errors.InvalidJSON("x"), 400), (errors.InvalidImage("x"), 400),
    (errors.Unauthorized("x"), 401), (errors.Forbidden("x"), 403), (errors.UnknownPrediction("x"), 404),
    (errors.PayloadTooLarge("x"), 413), (errors.BatchTooLarge("x"), 413), (errors.UnsupportedMediaType("x"), 415),
    (errors.BackendError("x"), 502), (errors.BackendUnavailable("x"), 503), (errors.BackendTimeout("x"), 504),
])
def test_status_mapping(error, status):
    assert status_for(error) == status


def test_unknown_route_and_wrong_method_are_json(client):
    response = client.get("/v2/nothing")
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
    response = client.get("/v1/predict")
    assert response.status_code == 405 and response.json["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("method, path", [("POST", "/v1//predict"), ("POST", "/v1//feedback"), ("POST", "/v1/predict/"),
                                          ("GET", "/healthz/"), ("GET", "/static//app.js")])
def test_odd_slashes_are_a_json_404_not_an_html_redirect(client, method, path):
    # werkzeug would answer a 308 with an HTML body (and a client following it would resend the body).
    response = client.open(path, method=method, json={})
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
    assert "Location" not in response.headers


def test_no_route_answers_with_a_redirect(app):
    # Every route is exact: none ends with a slash that werkzeug would add by redirecting (except the page).
    assert [rule.rule for rule in app.url_map.iter_rules() if rule.rule.endswith("/")] == ["/"]
    assert app.url_map.merge_slashes is False


def test_body_over_the_limit_is_413_json(make_app):
    client = make_app(MAX_BODY_BYTES=1000).test_client()
    response = client.post("/v1/predict", data=b"x" * 2000, content_type="application/json")
    assert response.status_code == 413 and response.json["error"]["code"] == "payload_too_large"


def test_unexpected_bug_is_a_json_500_without_internals(make_app):
    app = make_app()

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.json["error"]["code"] == "internal_error" and "secret" not in response.get_data(as_text=True)
