"""The real-world evaluation set (benchmarks/realworld_set.py) and its evaluation through the real API
(benchmarks/realworld_eval.py): determinism, the manifest, the styles, the frontend's limits, and a run against a
real frontend process serving a published model."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.benchmarks import load_script
from tests.support.frontend_process import FrontendProcess

COUNT = 15  # every style three times


@pytest.fixture(scope="module")
def mnist_test(mnist_npz):
    with np.load(mnist_npz) as data:
        return data["x_test"], data["y_test"]


@pytest.fixture(scope="module")
def realworld():
    return load_script("realworld_set")


@pytest.fixture(scope="module")
def small_set(realworld, mnist_test, tmp_path_factory):
    out = tmp_path_factory.mktemp("realworld")
    manifest = realworld.write_set(*mnist_test, out, COUNT, seed=16)
    return out, manifest


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_images(realworld, mnist_test, small_set,
                                                                           tmp_path):
    out, manifest = small_set
    again = realworld.write_set(*mnist_test, tmp_path / "again", COUNT, seed=16)
    assert again == manifest
    for entry in manifest["images"]:
        assert (tmp_path / "again" / entry["file"]).read_bytes() == (out / entry["file"]).read_bytes()
    other = realworld.write_set(*mnist_test, tmp_path / "other", COUNT, seed=17)
    assert [e["sha256"] for e in other["images"]] != [e["sha256"] for e in manifest["images"]]
    # A smaller set is the start of a larger one with the same seed.
    assert realworld.plan(10_000, 5, 16) == realworld.plan(10_000, COUNT, 16)[:5]


def test_the_manifest_gives_each_image_its_test_digits_label(small_set, mnist_test):
    out, manifest = small_set
    _, y_test = mnist_test
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["source"] == "MNIST test images" and manifest["count"] == len(manifest["images"]) == COUNT
    indices = [e["test_index"] for e in manifest["images"]]
    assert len(set(indices)) == COUNT and all(0 <= i < len(y_test) for i in indices)
    for entry in manifest["images"]:
        assert entry["label"] == int(y_test[entry["test_index"]])
        assert entry["sha256"] == hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest()
    assert sorted(p.name for p in out.iterdir()) == sorted([e["file"] for e in manifest["images"]] + ["manifest.json"])


def test_every_style_is_there_in_turn_and_in_its_format(small_set, realworld):
    out, manifest = small_set
    styles = [e["style"] for e in manifest["images"]]
    assert styles == [realworld.STYLES[i % 5] for i in range(COUNT)]
    for entry in manifest["images"]:
        image = Image.open(out / entry["file"])
        assert image.format == {"png": "PNG", "jpg": "JPEG"}[entry["file"].rsplit(".", 1)[1]]
        gray = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        assert np.median(border) > 0.3 and gray.min() < np.median(border) - 0.2  # dark ink on lighter paper
        if entry["style"] == "canvas":  # what the page's canvas.toDataURL("image/png") gives
            assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (280, 280))
            pixels = np.asarray(image)
            assert (pixels[..., 3] == 255).all() and np.median(pixels[..., 0]) == 255 and pixels[..., 0].min() == 0
        if entry["style"] == "small":
            ink = gray < np.median(gray) - 0.25
            rows = np.flatnonzero(ink.any(axis=1))
            assert rows[-1] - rows[0] < 0.15 * gray.shape[0]  # a small digit in a large frame


def test_every_image_is_within_the_frontends_limits(small_set):
    from frontend.config import defaults
    from frontend.preprocess import decode_cost, open_image, shrink_on_decode

    limits = defaults()
    out, manifest = small_set
    for entry in manifest["images"]:
        data = (out / entry["file"]).read_bytes()
        assert len(data) <= 4 * 1024 * 1024 <= limits["MAX_BODY_BYTES"]  # 4 MiB: the chart's maxBodyBytes
        image = open_image(data, limits["MAX_IMAGE_PIXELS"])  # raises over the pixel limit
        shrink_on_decode(image)
        assert decode_cost(image) <= limits["DECODE_MEMORY_BYTES"]


def test_pen_strokes_follow_a_one_pixel_skeleton(realworld):
    bar = np.zeros((20, 40), bool)
    bar[6:13, 4:36] = True
    skeleton = realworld.zhang_suen(bar)
    assert skeleton.any() and not (skeleton & ~bar).any()
    assert (skeleton.sum(axis=0)[8:32] == 1).all()  # one pixel across the bar's middle
    blocks = skeleton[:-1, :-1] & skeleton[1:, :-1] & skeleton[:-1, 1:] & skeleton[1:, 1:]
    assert not blocks.any()


@pytest.fixture(scope="module")
def frontend(published_models, tmp_path_factory):
    """A real frontend (gunicorn, embedded backend) with an API key, serving published version 2 as its only one."""
    work = tmp_path_factory.mktemp("realworld-frontend")
    store = work / "models" / "mnist"
    shutil.copytree(published_models.base_path / "2", store / "2")
    keys = work / "keys"
    keys.write_text(f"sha256:{hashlib.sha256(b'realworld-key').hexdigest()} realworld\n")
    server = FrontendProcess(work, {"MNIST_BACKEND": "embedded", "MNIST_MODEL_NAME": "mnist",
                                    "MNIST_MODEL_BASE_PATH": str(store), "MNIST_API_KEYS_FILE": str(keys),
                                    "MNIST_WORKERS": "1", "MNIST_ACCESS_LOG": "0", "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        server.wait_ready(timeout=90)
        yield server
    finally:
        server.stop()


LAST_LINE = re.compile(r"^real-world accuracy (\d\.\d{4}) \((\d+)/(\d+)\); photo \d\.\d{4} \(\d+/3\), "
                       r"thick \d\.\d{4} \(\d+/3\), thin \d\.\d{4} \(\d+/3\), small \d\.\d{4} \(\d+/3\), "
                       r"canvas \d\.\d{4} \(\d+/3\)$")


@pytest.mark.slow
def test_evaluation_posts_each_image_to_the_real_api_and_reports_per_style(small_set, frontend, tmp_path, capsys):
    out, manifest = small_set
    evaluation = load_script("realworld_eval")
    report = tmp_path / "answers.json"
    code = evaluation.main(["--set", str(out), "--url", frontend.url, "--api-key", "realworld-key",
                            "--json", str(report)])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    match = LAST_LINE.match(last)
    assert match, last
    answers = json.loads(report.read_text())["answers"]
    assert [a["file"] for a in answers] == [e["file"] for e in manifest["images"]]
    assert all(a["status"] == 200 and a["version"] == 2 and 0 <= a["digit"] <= 9 for a in answers)
    right = sum(1 for a, e in zip(answers, manifest["images"], strict=True) if a["digit"] == e["label"])
    assert (int(match.group(2)), int(match.group(3))) == (right, COUNT)
    assert float(match.group(1)) == pytest.approx(right / COUNT, abs=1e-4)
    # The same image sent by hand gets the same answer: the script sends the bytes as they are.
    first = out / manifest["images"][0]["file"]
    import requests

    response = requests.post(f"{frontend.url}/v1/predict", data=first.read_bytes(),
                             headers={"Content-Type": "image/jpeg", "X-API-Key": "realworld-key"}, timeout=30)
    assert response.json()["predictions"][0]["digit"] == answers[0]["digit"]


@pytest.mark.slow
def test_evaluation_counts_refused_requests_as_wrong_and_says_why(small_set, frontend, tmp_path, capsys):
    out, _ = small_set
    code = load_script("realworld_eval").main(["--set", str(out), "--url", frontend.url, "--api-key", "wrong",
                                               "--limit", "5", "--min-accuracy", "0.5"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "errors {'403 forbidden': 5}" in printed
    assert printed.strip().splitlines()[-1].startswith("real-world accuracy 0.0000 (0/5); photo 0.0000 (0/1)")
