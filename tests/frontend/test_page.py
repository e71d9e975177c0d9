"""GET /: the page and its static files are served locally (no CDN), with a strict CSP."""

from __future__ import annotations

import re

from frontend.auth import hash_key


def test_page_loads_only_local_assets(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert '<canvas id="pad"' in html and 'id="api-key"' not in html
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith("/static/"), url
        asset = client.get(url)
        asset.close()  # static files are streamed from disk
        assert asset.status_code == 200
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]


def test_page_asks_for_a_key_when_keys_are_on(make_app, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(hash_key("k") + "\n")
    html = make_app(API_KEYS_FILE=str(keys)).test_client().get("/").get_data(as_text=True)
    assert 'id="api-key"' in html
