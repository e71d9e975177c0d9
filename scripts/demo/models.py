"""The demo's model store: which versions exist (the operator's reading), training missing ones with the real trainer."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mnist_operator.versions import store_candidate_info

from .supervisor import die_with_parent


@dataclass(frozen=True)
class TrainSpec:
    """How the demo trains one version: small on purpose, so the demo stays brisk on a laptop CPU."""

    version: int
    train_limit: int
    epochs: int
    shuffle_labels: bool = False
    seed: int = 0
    # One network, not the trainer's default three-member ensemble: the demo shows a rollout, not the best
    # accuracy, and one member trains each version in a third of the time.
    members: int = 1

    def describe(self) -> str:
        kind = "BROKEN: labels shuffled" if self.shuffle_labels else "real labels"
        return f"v{self.version}: {self.train_limit} training images, {self.epochs} epoch(s), {kind}"


# v1 is deliberately weaker than v2 (a fifth of the data), so promoting v2 is an improvement; v2 sees every
# training image once, about 20 s on two cores; v3 learns from shuffled labels, so it is confidently wrong:
# the candidate a rollout must refuse.
TRAIN_SPECS = {
    1: TrainSpec(1, train_limit=12000, epochs=1, seed=1),
    2: TrainSpec(2, train_limit=60000, epochs=1, seed=2),
    3: TrainSpec(3, train_limit=6000, epochs=1, shuffle_labels=True, seed=3),
}


def is_published(model_dir: Path, version: int) -> bool:
    """A finished version, as the operator's gate sees it (the trainer renames it into place once complete)."""
    return store_candidate_info(model_dir, version).exists


def offline_accuracy(model_dir: Path, version: int) -> float | None:
    """test_accuracy from the version's metrics.json, read as the operator's gate reads it (None without one)."""
    return store_candidate_info(model_dir, version).test_accuracy


def versions_to_train(model_dir: Path, needed: Sequence[int], retrain: bool) -> list[int]:
    """The versions that must be (re)trained before the scenario can run."""
    return [v for v in needed if retrain or not is_published(model_dir, v)]


def venv_bin(name: str) -> str:
    """A console script of the virtualenv the demo runs in (no PATH needed)."""
    return str(Path(sys.executable).parent / name)


def train_command(spec: TrainSpec, data: Path, base_path: Path) -> list[str]:
    """The `mnist-train` command line for spec."""
    argv = [
        venv_bin("mnist-train"),
        "--data",
        str(data),
        "--model-base-path",
        str(base_path),
        "--epochs",
        str(spec.epochs),
        "--train-limit",
        str(spec.train_limit),
        "--version",
        str(spec.version),
        "--seed",
        str(spec.seed),
        "--members",
        str(spec.members),
        # The demo has no cluster to register a ModelVersion in.
        "--register",
        "never",
    ]
    if spec.shuffle_labels:
        argv.append("--shuffle-labels")
    return argv


def remove_version(model_dir: Path, version: int) -> None:
    """Drop a published version before retraining it (only ever inside the demo's own model store)."""
    shutil.rmtree(model_dir / str(version), ignore_errors=True)


# TensorFlow's C++ start-up lines (absl format, e.g. `I0000 00:00:17.. 1234 port.cc:153] ...`) and its
# "before absl::InitializeLog" notice say nothing to a demo audience; they stay in the log file only.
_TF_NOISE = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl)")


def worth_showing(line: str) -> bool:
    """A trainer output line the person watching should see."""
    return bool(line.strip()) and not _TF_NOISE.match(line)


def run_training(argv: Sequence[str], log_path: Path) -> subprocess.CompletedProcess:
    """Run one training to completion; all output goes to log_path, the meaningful lines to the terminal."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - a killed demo must not leave a training behind
        )
        assert process.stdout is not None
        try:
            for line in process.stdout:
                log.write(line)
                if worth_showing(line):
                    print(f"    | {line.rstrip()}", flush=True)
            process.wait()
        except BaseException:
            process.terminate()
            process.wait()
            raise
    return subprocess.CompletedProcess(list(argv), process.returncode)
