"""`mnist-frontend`: start gunicorn with the app; flags mirror the MNIST_* environment variables."""

from __future__ import annotations

import argparse
import os
import sys

from frontend.config import BACKENDS, ENV_SETTINGS, load_from_env
from frontend.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-frontend",
        description="Serve the MNIST prediction API and page with gunicorn. Every flag overrides the environment "
                    "variable named in its help; see docs/FRONTEND.md for all settings.")
    for setting in ENV_SETTINGS:
        if setting.flag is None:
            continue
        kwargs = {"dest": setting.key, "default": None, "help": f"{setting.help} [{setting.env}]"}
        if setting.key == "BACKEND":
            kwargs["choices"] = BACKENDS
        parser.add_argument(setting.flag, **kwargs)
    parser.add_argument("--check-config", action="store_true", help="validate the settings and exit")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    environ = dict(os.environ)
    for setting in ENV_SETTINGS:
        value = getattr(args, setting.key, None) if setting.flag else None
        if value is not None:
            environ[setting.env] = str(value)
    try:
        config = load_from_env(environ)
    except ConfigError as error:
        print(f"mnist-frontend: {error.message}", file=sys.stderr)
        raise SystemExit(2) from None
    if config["BACKEND"] == "embedded" and not os.path.isdir(config["MODEL_BASE_PATH"]):
        print(f"mnist-frontend: model base path {config['MODEL_BASE_PATH']} is not a directory "
              "(set --model-base-path or MNIST_MODEL_BASE_PATH)", file=sys.stderr)
        raise SystemExit(2)
    for path_key in ("ROUTING_FILE", "API_KEYS_FILE", "FEEDBACK_KEY_FILE"):
        if config[path_key] and not os.path.isfile(config[path_key]):
            print(f"mnist-frontend: {path_key.lower().replace('_', ' ')} {config[path_key]} does not exist",
                  file=sys.stderr)
            raise SystemExit(2)
    claims_file = config["FEEDBACK_CLAIMS_FILE"]
    if claims_file and not os.path.isdir(os.path.dirname(claims_file) or "."):
        print(f"mnist-frontend: the directory of the feedback claims file {claims_file} does not exist",
              file=sys.stderr)
        raise SystemExit(2)
    if args.check_config:
        print("configuration ok")
        return
    # exec: gunicorn's master becomes this process, so SIGTERM from Kubernetes or a terminal reaches it directly.
    os.execve(sys.executable, [sys.executable, "-m", "gunicorn", "-c", "python:frontend.gunicorn_conf"], environ)


if __name__ == "__main__":
    main()
