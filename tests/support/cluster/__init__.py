"""The cluster tests' test bed: one real control plane per test session (scripts/sim/control_plane.py).

`Cluster` is a view of that control plane bound to one namespace of a test's own: kubectl, helm and the
kubernetes client pointed at it, and small helpers to read and seed objects. Every call goes through
the real API server (as the admin, or as a ServiceAccount with `service_account_kubeconfig`).
docs/TESTING.md says what is real and what kwok plays.
"""

from .cluster import Cluster, ClusterCall, wait_for

__all__ = ["Cluster", "ClusterCall", "wait_for"]
