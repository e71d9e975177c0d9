"""frontend.auth and the API key check on the routes: 401 without a key, 403 with a wrong one, open paths stay open."""

from __future__ import annotations

import pytest
from frontend.auth import check_key, hash_key, parse_key_file, presented_key
from frontend.errors import ConfigError, Forbidden, Unauthorized


def test_key_file_format():
    text = f"# keys\n\n{hash_key('alpha')} ci-runner\n  {hash_key('beta')}\n"
    keys = parse_key_file(text)
    assert [k.name for k in keys] == ["ci-runner", "line4"]
    assert check_key(keys, "beta").name == "line4"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "alpha\n", "sha256:ABC\n",
                                  "sha256:" + "A" * 64 + "\n", "md5:" + "a" * 32 + "\n"])
def test_bad_key_files_are_config_errors_that_do_not_echo_the_line(text):
    with pytest.raises(ConfigError) as info:
        parse_key_file(text)
    assert "alpha" not in info.value.message


def test_presented_key_from_either_header():
    assert presented_key("k1", None) == "k1"
    assert presented_key(None, "Bearer k2") == "k2"
    assert presented_key(None, "bearer   k3 ") == "k3"
    assert presented_key(None, "Basic abc") is None
    assert presented_key(None, "Bearer ") is None


def test_check_key_errors():
    keys = parse_key_file(hash_key("alpha"))
    with pytest.raises(Unauthorized):
        check_key(keys, None)
    with pytest.raises(Forbidden):
        check_key(keys, "wrong")


@pytest.fixture
def keyed_client(make_app, tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"{hash_key('s3cret')} tester\n")
    return make_app(API_KEYS_FILE=str(path)).test_client(), path


def test_api_routes_need_a_key(keyed_client):
    client, _ = keyed_client
    response = client.post("/v1/predict", json={"instances": [[[0] * 28] * 28]})
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert "WWW-Authenticate" in response.headers
    response = client.post("/v1/predict", json={}, headers={"X-API-Key": "nope"})
    assert response.status_code == 403 and response.json["error"]["code"] == "forbidden"
    assert client.post("/v1/feedback", json={}).status_code == 401


def test_a_good_key_gets_through_either_header(keyed_client):
    client, _ = keyed_client
    # Past auth, the empty model dir answers 503: proof the key was accepted.
    for headers in ({"X-API-Key": "s3cret"}, {"Authorization": "Bearer s3cret"}):
        assert client.post("/v1/predict", json={"instances": [[[0] * 28] * 28]}, headers=headers).status_code == 503


def test_open_paths_need_no_key(keyed_client):
    client, _ = keyed_client
    for path in ("/healthz", "/metrics", "/openapi.json", "/"):
        assert client.get(path).status_code == 200, path
    assert client.get("/readyz").status_code == 503  # no model, but not a 401


def test_key_file_rotation_without_restart_and_broken_file_keeps_old_keys(keyed_client):
    client, path = keyed_client
    path.write_text(f"{hash_key('new-key')}\n")
    assert client.post("/v1/feedback", json={}, headers={"X-API-Key": "new-key"}).status_code == 400
    assert client.post("/v1/feedback", json={}, headers={"X-API-Key": "s3cret"}).status_code == 403
    path.write_text("garbage that is not a key line\n")
    assert client.post("/v1/feedback", json={}, headers={"X-API-Key": "new-key"}).status_code == 400
    assert b"mnist_frontend_api_key_reload_errors_total{model=\"mnist\"} 1.0" in client.get("/metrics").data


def test_unusable_key_file_at_start_refuses_everyone(make_app, tmp_path):
    path = tmp_path / "keys"
    path.write_text("not a key\n")
    client = make_app(API_KEYS_FILE=str(path)).test_client()
    assert client.post("/v1/predict", json={}, headers={"X-API-Key": "anything"}).status_code == 403
