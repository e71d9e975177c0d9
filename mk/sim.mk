# `make sim-up` / `make sim-down`: the chart on a real Kubernetes control plane without Docker (docs/SIM.md):
# etcd, kube-apiserver, controller-manager and scheduler from `make tools`, kwok playing nodes and pods, local
# processes playing the containers. Knobs: SIM_PORT (frontend on 127.0.0.1, default 8080), SIM_DIR (state:
# kubeconfig, pid files, logs; default build/sim), SIM_NAME (control plane name), SIM_MODELS (model store root;
# default models, where make demo's v1 and v2 are trained once and kept), SIM_VALUES (values files after
# ci/sim-values.yaml, e.g. charts/mnist-platform/ci/arm64-embedded-values.yaml: serving by the frontend alone).

SIM_PORT ?= 8080
SIM_DIR ?= build/sim
SIM_NAME ?= mnist-sim
SIM_MODELS ?= models
SIM_VALUES ?=
SIM_ARGS = --dir $(SIM_DIR) --name $(SIM_NAME)

.PHONY: sim-up sim-down sim-traffic
sim-up: $(STAMP) $(MNIST_DATA) $(TOOLS_HELM) $(TOOLS_K8S) ## no Docker: real control plane + kwok, helm install, operator/frontend/TF Serving stand-in as local processes
	@$(PY) -m scripts.sim up $(SIM_ARGS) --port $(SIM_PORT) --model-store $(SIM_MODELS) $(foreach v,$(SIM_VALUES),--values $(v))

sim-down: ## stop every process sim-up started and delete the simulated cluster (models stay)
	@$(PY) -m scripts.sim down $(SIM_ARGS) --model-store $(SIM_MODELS)

sim-traffic: ## real MNIST digits with their true labels through the sim's frontend (10/s, 5 min): what a rollout judges
	@$(PY) -m scripts.sim traffic $(SIM_ARGS)
