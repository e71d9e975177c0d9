"""The draw-a-digit page in headless Debian Chromium: draw with the mouse, see a prediction, click feedback."""

from __future__ import annotations

import os

import pytest

from tests.frontend.helpers import metric_value

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_draw_a_one_predict_and_send_feedback(served_app, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (mk/frontend.mk), or apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            external: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(served_app) or r.url.startswith("data:")
                    else external.append(r.url))
            page.goto(served_app + "/")
            box = page.locator("#pad").bounding_box()
            # A "1": one thick vertical stroke down the middle of the canvas.
            page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.15)
            page.mouse.down()
            for step in range(1, 21):
                page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * (0.15 + 0.035 * step))
            page.mouse.up()
            page.click("#predict")
            page.wait_for_selector("#result:not([hidden])", timeout=20_000)
            digit = page.text_content("#digit")
            assert digit is not None and digit.strip().isdigit()
            assert page.text_content("#version") == "2"
            assert page.locator("#bars .bar").count() == 10
            page.screenshot(path=str(tmp_path / "page.png"))
            page.click("#right")
            page.wait_for_selector("#thanks:not([hidden])", timeout=10_000)
            assert "recorded" in page.text_content("#thanks")
            assert not errors and not external
        finally:
            browser.close()
    import requests

    metrics = requests.get(served_app + "/metrics", timeout=5).text
    assert metric_value(metrics, "mnist_frontend_feedback_total", version="2", result="correct") == 1
