"""Accuracy on the real-world evaluation set (benchmarks/realworld_set.py) through a running frontend's real API.

Each image is sent on its own, as a user's upload is, to `POST /v1/predict` with its bytes as the body
(`Content-Type: image/png` or `image/jpeg`, docs/API.md) and the API key, if any, in `X-API-Key`. An answer that is
not 200 counts as wrong and is reported. The last line gives the accuracy overall and per style.

    .venv/bin/python benchmarks/realworld_eval.py --set build/realworld --url http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

import requests

CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def predict(session: requests.Session, url: str, path: Path, api_key: str | None, timeout: float) -> dict:
    """One image through POST /v1/predict: {"status", "digit", "version"} (digit None unless 200)."""
    headers = {"Content-Type": CONTENT_TYPES[path.suffix.lower()]}
    if api_key:
        headers["X-API-Key"] = api_key
    response = session.post(f"{url.rstrip('/')}/v1/predict", data=path.read_bytes(), headers=headers, timeout=timeout)
    if response.status_code != 200:
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = "?"
        return {"status": response.status_code, "error": code, "digit": None, "version": None}
    answer = response.json()
    return {"status": 200, "digit": answer["predictions"][0]["digit"], "version": answer["version"]}


def summarize(rows: list[dict], styles: list[str]) -> dict:
    """Accuracy overall and per style, errors by status, and the versions that answered."""
    def share(selected: list[dict]) -> dict:
        right = sum(1 for r in selected if r["digit"] == r["label"])
        return {"right": right, "total": len(selected), "accuracy": right / len(selected) if selected else None}

    return {"overall": share(rows), "styles": {s: share([r for r in rows if r["style"] == s]) for s in styles},
            "errors": dict(Counter(f"{r['status']} {r['error']}" for r in rows if r["status"] != 200)),
            "versions": sorted({r["version"] for r in rows if r["version"] is not None})}


def summary_line(summary: dict) -> str:
    def shown(part: dict) -> str:
        accuracy = "n/a" if part["accuracy"] is None else f"{part['accuracy']:.4f}"
        return f"{accuracy} ({part['right']}/{part['total']})"

    styles = ", ".join(f"{name} {shown(part)}" for name, part in summary["styles"].items())
    return f"real-world accuracy {shown(summary['overall'])}; {styles}"


def evaluate(set_dir: Path, url: str, api_key: str | None, timeout: float, limit: int | None = None) -> list[dict]:
    manifest = json.loads((set_dir / "manifest.json").read_text())
    rows = []
    with requests.Session() as session:
        for entry in manifest["images"][:limit]:
            answer = predict(session, url, set_dir / entry["file"], api_key, timeout)
            rows.append({**answer, "file": entry["file"], "label": entry["label"], "style": entry["style"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, required=True, help="directory written by realworld_set.py")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the frontend (default: %(default)s)")
    parser.add_argument("--api-key", default=os.environ.get("MNIST_API_KEY"), help="API key [MNIST_API_KEY]")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of the set")
    parser.add_argument("--min-accuracy", type=float, default=0.0, help="exit 1 below this overall accuracy")
    parser.add_argument("--json", type=Path, default=None, help="also write every answer and the summary here")
    args = parser.parse_args(argv)
    if not (args.set / "manifest.json").is_file():
        parser.error(f"{args.set / 'manifest.json'} is missing: make the set with benchmarks/realworld_set.py")
    try:
        rows = evaluate(args.set, args.url, args.api_key, args.timeout, args.limit)
    except requests.RequestException as error:
        print(f"realworld_eval.py: error: {args.url}: {error}", file=sys.stderr)
        return 2
    styles = json.loads((args.set / "manifest.json").read_text())["styles"]
    summary = summarize(rows, styles)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "answers": rows}, indent=1) + "\n")
    misses = [r for r in rows if r["digit"] != r["label"]]
    for row in misses[:20]:
        got = row["digit"] if row["status"] == 200 else f"HTTP {row['status']} {row['error']}"
        print(f"  miss: {row['file']} label {row['label']} -> {got}")
    if len(misses) > 20:
        print(f"  ... and {len(misses) - 20} more misses")
    print(f"answered by version(s) {summary['versions']}; errors {summary['errors'] or 'none'}")
    print(summary_line(summary))
    return 1 if (summary["overall"]["accuracy"] or 0.0) < args.min_accuracy else 0


if __name__ == "__main__":
    sys.exit(main())
