"""frontend.metrics: the table in docs/FRONTEND.md ("Metrics") names every metric the frontend exports, with its
type and labels, and nothing else (the operator and dashboards are written against that table)."""

from __future__ import annotations

from frontend.metrics import Metrics
from prometheus_client.metrics import MetricWrapperBase


def documented_metrics(doc: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    rows = {}
    for line in doc.splitlines():
        if line.startswith("| `mnist_frontend_"):
            name, kind, labels = (cell.strip() for cell in line.strip("|").split("|")[:3])
            rows[name.strip("`")] = (kind, tuple(label.strip() for label in labels.split(",")))
    return rows


def exported_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    exported = {}
    for metric in vars(Metrics("mnist")).values():
        if isinstance(metric, MetricWrapperBase):
            name = metric._name + ("_total" if metric._type == "counter" else "")
            exported[name] = (metric._type, tuple(metric._labelnames))
    return exported


def test_every_metric_is_documented_with_its_type_and_labels(repo_root):
    documented = documented_metrics((repo_root / "docs" / "FRONTEND.md").read_text())
    assert len(documented) >= 11
    assert exported_metrics() == documented
