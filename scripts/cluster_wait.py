"""Wait for a training Job or a ModelRollout on the cluster, and stop as soon as the outcome is known.

`make train` and `make rollout` (mk/cluster.mk) run it. `kubectl wait` waits for one condition only, so a failed
Job or a rolled-back rollout sat out the whole timeout (45 / 20 minutes); this returns at once with the reason.

    python3 -m scripts.cluster_wait job NAME -n NS [--timeout 45m] [--kubectl kubectl]
    python3 -m scripts.cluster_wait rollout NAME -n NS [--timeout 20m] [--kubectl kubectl]

Exit 0: the Job completed / the rollout was Promoted. 1: the Job failed / the rollout ended RolledBack or Failed
(the reason printed). 2: bad arguments, or kubectl cannot read the object. 3: still running at the timeout.
Standard library only: it runs with the python3 that runs make, beside the user's kubectl.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

POLL_S = 3.0
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)?$")
TERMINAL_ROLLOUT = {"Promoted": True, "RolledBack": False, "Failed": False}


@dataclass(frozen=True)
class Outcome:
    done: bool  # the outcome is known
    ok: bool  # ... and it is the good one
    line: str  # what to print


def duration_s(text: str) -> float:
    """`45m`, `20m`, `90s`, `1h`, `300` (seconds) -> seconds; anything else is a ValueError."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r} (e.g. 45m, 90s, 1h)")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def job_outcome(job: dict[str, Any]) -> Outcome:
    """A batch/v1 Job's outcome from its conditions (Complete / Failed), else how far it is."""
    name = job.get("metadata", {}).get("name", "?")
    failed = _condition(job, "Failed")
    if failed:
        reason = failed.get("reason") or "Failed"
        message = failed.get("message") or ""
        return Outcome(True, False, f"job/{name} failed: {reason}" + (f": {message}" if message else ""))
    if _condition(job, "Complete"):
        return Outcome(True, True, f"job/{name} complete")
    status = job.get("status") or {}
    return Outcome(False, False, f"job/{name}: {status.get('active', 0)} running, {status.get('failed', 0)} failed "
                                 "pod(s)")


def rollout_outcome(rollout: dict[str, Any]) -> Outcome:
    """A ModelRollout's outcome from status.phase (Promoted; RolledBack or Failed), else its phase and stage."""
    name = rollout.get("metadata", {}).get("name", "?")
    status = rollout.get("status") or {}
    phase = status.get("phase") or "Pending"
    reason, message = status.get("reason") or "", status.get("message") or ""
    detail = ": ".join(x for x in (reason, message) if x)
    if phase in TERMINAL_ROLLOUT:
        return Outcome(True, TERMINAL_ROLLOUT[phase], f"modelrollout/{name} {phase}" + (f": {detail}" if detail else ""))
    stage = status.get("stage") or ""
    weight = status.get("candidateWeight")
    progress = ", ".join(x for x in (stage, f"candidate {weight}%" if weight is not None else "") if x)
    return Outcome(False, False, f"modelrollout/{name} {phase}" + (f" ({progress})" if progress else "")
                   + (f": {detail}" if detail else ""))


def read(kubectl: list[str], namespace: str, resource: str) -> dict[str, Any]:
    result = subprocess.run([*kubectl, "-n", namespace, "get", resource, "-o", "json"], capture_output=True,
                            text=True, timeout=60)
    if result.returncode != 0:
        raise LookupError(result.stderr.strip() or f"kubectl get {resource} failed")
    return json.loads(result.stdout)


def wait(get: Callable[[], dict[str, Any]], outcome: Callable[[dict[str, Any]], Outcome], timeout_s: float,
         say: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep, poll_s: float = POLL_S) -> int:
    """Poll until the outcome is known (0 good, 1 bad) or the timeout (3); progress printed when it changes."""
    deadline = clock() + timeout_s
    last = None
    while True:
        result = outcome(get())
        if result.line != last:
            say(result.line)
            last = result.line
        if result.done:
            return 0 if result.ok else 1
        if clock() >= deadline:
            say(f"still not done after {timeout_s:g} s: {result.line}")
            return 3
        sleep(min(poll_s, max(0.0, deadline - clock())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cluster_wait", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("job", "rollout"))
    parser.add_argument("name")
    parser.add_argument("-n", "--namespace", required=True)
    parser.add_argument("--timeout", default="20m", help="e.g. 45m, 90s, 1h (default: %(default)s)")
    parser.add_argument("--kubectl", default="kubectl", help="the kubectl command (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        timeout_s = duration_s(args.timeout)
    except ValueError as exc:
        parser.error(str(exc))
    resource = f"job/{args.name}" if args.what == "job" else f"modelrollouts.ml.mnist-platform.dev/{args.name}"
    outcome = job_outcome if args.what == "job" else rollout_outcome
    try:
        return wait(lambda: read(shlex.split(args.kubectl), args.namespace, resource), outcome, timeout_s,
                    say=lambda line: print(f"    {line}", flush=True))
    except LookupError as exc:
        print(f"cluster_wait: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
