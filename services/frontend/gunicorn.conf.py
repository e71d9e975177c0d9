"""gunicorn config for running from this directory: `gunicorn -c gunicorn.conf.py`. The settings live in the
package (frontend/gunicorn_conf.py) so the installed console script and the container use the same ones."""

from frontend.gunicorn_conf import *  # noqa: F403
from frontend.gunicorn_conf import JsonAccessLogger, child_exit, on_exit, post_worker_init  # noqa: F401
