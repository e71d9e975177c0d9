"""`make sim-traffic`: real MNIST test digits through the sim's frontend, their true labels fed back.

What a rollout's analysis judges: without traffic every check is inconclusive. Uses the demo's generator
(scripts/demo/traffic.py: loopback only, bounded in rate, count and time) with the chart's API key, read
from its Secret through the API.
"""

from __future__ import annotations

import base64
import time

from scripts.demo.traffic import TrafficGenerator, load_test_digits

from .lifecycle import Sim, SimConfig, SimError, recorded, say


def api_key(sim: Sim) -> str:
    secret = sim.get_json("secret", f"{sim.cfg.fullname}-api-keys")
    if not secret:
        raise SimError(f"no Secret {sim.cfg.fullname}-api-keys: is the sim up (`make sim-up`)?")
    return base64.b64decode(secret["data"]["api-key"]).decode()


def run_traffic(cfg: SimConfig, rate: float, seconds: float, report_every_s: float = 10.0) -> int:
    sim = Sim(recorded(cfg))
    cfg = sim.cfg
    if sim.procs.get("frontend") is None:
        raise SimError(f"the sim's frontend is not running (state in {cfg.state_dir}): `make sim-up` first")
    digits = load_test_digits(cfg.data, count=2000, seed=1)
    generator = TrafficGenerator(cfg.base_url, digits, rate_per_s=rate, max_requests=int(rate * seconds),
                                 max_seconds=seconds, headers={"X-API-Key": api_key(sim)}).start()
    say(f"==> {rate:g} real MNIST test digits/s to {cfg.base_url} for {seconds:.0f} s, true labels fed back "
        "(Ctrl-C stops)")
    try:
        while generator.running:
            deadline = time.monotonic() + report_every_s
            while generator.running and time.monotonic() < deadline:
                time.sleep(0.2)
            stats = generator.snapshot()
            answered = ", ".join(f"v{v}: {n}" for v, n in sorted(stats.by_version.items()))
            say(f"    {time.strftime('%H:%M:%S')} sent {stats.sent}, answered by {answered or 'none yet'}; "
                f"5xx {stats.server_errors}, lost {stats.lost}, feedback counted "
                f"{sum(stats.feedback_by_version.values())}")
    except KeyboardInterrupt:
        generator.stop()
    stats = generator.snapshot()
    return 0 if stats.sent and not stats.lost else 1
