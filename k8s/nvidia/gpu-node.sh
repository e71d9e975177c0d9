#!/usr/bin/env bash
# Label (and optionally taint) a GPU node the way k8s/nvidia/device-plugin.yaml and the chart's
# trainer.gpu values expect. The GPU Operator labels nodes itself, and make kind-up GPU=1's nvkind template
# (k8s/nvidia/nvkind-config-template.yaml) labels its worker; use this elsewhere.
#   k8s/nvidia/gpu-node.sh NODE [--taint]
set -euo pipefail
node="${1:?usage: $0 NODE [--taint]}"
kubectl label node "$node" nvidia.com/gpu.present=true --overwrite
if [ "${2:-}" = "--taint" ]; then
  kubectl taint node "$node" nvidia.com/gpu=present:NoSchedule --overwrite
fi
