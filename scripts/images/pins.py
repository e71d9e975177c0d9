"""What an image installs, for the Dockerfiles' `pins` stage (standard library only: it runs in the base image).

    python3 pins.py requirements services/trainer/pyproject.toml k8s   # dependencies (+ extras), one per line
    python3 pins.py from-report report.json                            # `pip install --dry-run --report` -> name==version

The second output is the image's whole dependency closure, sorted: the layers that install it are rebuilt only
when it changes, not whenever constraints.txt does (a pin of a development tool reinstalls nothing).
"""

from __future__ import annotations

import json
import re
import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    """The project's dependencies and those of the named extras ("[a,b]" and "a,b" spellings both work)."""
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    names = [e for extra in extras for e in extra.strip("[]").split(",") if e]
    return list(project["dependencies"]) + [dep for name in names for dep in project["optional-dependencies"][name]]


def pins_from_report(report: str) -> list[str]:
    with open(report) as f:
        installs = json.load(f)["install"]
    return sorted(f"{re.sub(r'[-_.]+', '-', i['metadata']['name']).lower()}=={i['metadata']['version']}"
                  for i in installs)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "requirements":
        lines = requirements(argv[1], argv[2:])
    elif len(argv) == 2 and argv[0] == "from-report":
        lines = pins_from_report(argv[1])
    else:
        print("usage: pins.py requirements PYPROJECT [EXTRA...] | pins.py from-report REPORT", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
