"""The demo package (scripts/demo) is imported by these tests from the repository root."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    # `.venv/bin/pytest` does not put the working directory on sys.path the way `python -m pytest` does.
    sys.path.insert(0, str(REPO_ROOT))
