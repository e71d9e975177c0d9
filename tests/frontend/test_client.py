"""mnist-client: predictions via the frontend and straight at TF Serving, feedback, and one-line errors."""

from __future__ import annotations

import json

import pytest
from frontend.client import main

from tests.frontend.helpers import png_bytes


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_files_and_mnist_indices_via_frontend_then_feedback(served_app, mnist_test, mnist_npz, tmp_path,
                                                                    capsys):
    image = tmp_path / "digit.png"
    image.write_bytes(png_bytes(mnist_test[0][0]))
    code, out, _ = run(capsys, "predict", str(image), "--index", "1", "--url", served_app, "--data", str(mnist_npz),
                       "--json")
    assert code == 0, (out, _)
    rows = json.loads(out)
    assert code == 0 and len(rows) == 2 and rows[1]["label"] == int(mnist_test[1][1])
    assert all(r["version"] == 2 and len(r["probabilities"]) == 10 for r in rows)
    code, out, _ = run(capsys, "feedback", rows[0]["request_id"], str(rows[0]["digit"]), "--token",
                       rows[0]["feedback_token"], "--url", served_app)
    assert code == 0 and "counted" in out and "right" in out
    code, out, _ = run(capsys, "predict", "--index", "0", "--url", served_app, "--data", str(mnist_npz))
    assert code == 0 and out.startswith("mnist-test[0]: ") and "version 2 route default" in out


@pytest.mark.parametrize("kind", ["grpc", "rest"])
def test_predict_straight_at_tfserving(kind, healthy_standin, mnist_npz, capsys):
    target = healthy_standin.grpc_target if kind == "grpc" else healthy_standin.rest_url
    code, out, err = run(capsys, "predict", "--index", "0", "--index", "1", f"--serving-{kind}", target,
                         "--version", "1", "--data", str(mnist_npz), "--json")
    assert code == 0, (err, healthy_standin.status(1), healthy_standin.status(2))
    assert [r["version"] for r in json.loads(out)] == [1, 1]


def test_clear_one_line_errors(capsys, tmp_path, mnist_npz):
    code, _, err = run(capsys, "predict", str(tmp_path / "missing.png"), "--url", "http://127.0.0.1:9")
    assert code == 2 and "cannot read" in err and len(err.splitlines()) == 1
    image = tmp_path / "digit.png"
    image.write_bytes(png_bytes([[0, 255], [255, 0]]))
    code, _, err = run(capsys, "predict", str(image), "--url", "http://127.0.0.1:9")
    assert code == 2 and "cannot reach" in err
    code, _, err = run(capsys, "predict", "--index", "99999", "--data", str(mnist_npz))
    assert code == 2 and "outside" in err
    code, _, err = run(capsys, "predict", "--index", "0", "--serving-grpc", "127.0.0.1:9", "--data", str(mnist_npz),
                       "--timeout", "2")
    assert code == 2 and "unreachable" in err


def test_http_errors_are_reported_with_code(served_app, capsys, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    code, _, err = run(capsys, "predict", str(bad), "--url", served_app)
    assert code == 1 and "400 invalid_image" in err
