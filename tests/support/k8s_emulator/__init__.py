"""A Kubernetes API emulator for tests, on kmock 0.8: real kopf, kubectl, helm and kubernetes clients talk to it.

Start one with the `k8s_api` pytest fixture (tests.support.k8s_emulator.fixtures) or
`emulated_cluster(tmp_path)`; docs/TESTING.md, section "Kubernetes API emulator", says what it does
and does not emulate.
"""

from .emulator import ApiError, KubernetesApiEmulator, ServedResource, parse_path
from .runner import EmulatedCluster, emulated_cluster, load_yaml_documents

__all__ = ["ApiError", "EmulatedCluster", "KubernetesApiEmulator", "ServedResource", "emulated_cluster",
           "load_yaml_documents", "parse_path"]
