"""Training report PNGs (loss/accuracy curves, confusion matrix) beside metrics.json."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: containers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

CURVES_FILE = "training_curves.png"
CONFUSION_FILE = "confusion_matrix.png"


def plot_curves(history: dict[str, list[float]], path: Path, held_out: str = "test") -> None:
    """Training curves; `held_out` names what the val_ curves were measured on (test or validation)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = range(1, len(history.get("loss", [])) + 1)
    for key, ax in (("loss", ax_loss), ("accuracy", ax_acc)):
        if key in history:
            ax.plot(epochs, history[key], marker="o", label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], marker="o", label=f"{held_out} {key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(np.log1p(matrix), cmap="Blues")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if i == j else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out_dir: Path, history: dict[str, list[float]], matrix: np.ndarray, accuracy: float,
                 curve_label: str = "test") -> list[Path]:
    curves, confusion = out_dir / CURVES_FILE, out_dir / CONFUSION_FILE
    plot_curves(history, curves, curve_label)
    plot_confusion(matrix, confusion, f"test accuracy {accuracy:.4f}")
    return [curves, confusion]
