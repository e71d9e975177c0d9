# The cluster path (docs/KIND.md): docker or podman + kind + kubectl + helm. `make up` runs, in order:
#   kind-up -> images -> kind-load -> deploy -> train -> rollout -> smoke;   `make down` deletes the cluster.
# Knobs: KIND_CLUSTER, NAMESPACE, RELEASE, GPU=1 (nvkind/GPU node: device plugin + gpu values),
# HELM_EXTRA_ARGS, ROLLOUT_EXAMPLE, ROLLOUT_STABLE, SMOKE_URL, ROLLOUT_TIMEOUT, TRAIN_TIMEOUT.
# Also: `make checkov` (the policy scanner's own virtualenv, used by tests/chart).

KIND_CLUSTER ?= mnist
NAMESPACE ?= mnist
RELEASE ?= mnist
GPU ?=
HELM_EXTRA_ARGS ?=
CHART_DIR := charts/mnist-platform
# The images (make images, make kind-load) are built in mk/images.mk, tagged with the chart's appVersion.
KIND ?= kind
NVKIND ?= nvkind
# GPU=1: the cluster is made by nvkind from this template (the GPU worker plus kind-config.yaml's control-plane).
NVKIND_CONFIG_TEMPLATE ?= k8s/nvidia/nvkind-config-template.yaml
KUBECTL ?= kubectl
# helm: the pinned one from `make tools` when present, else the one on PATH.
CLUSTER_HELM = $(or $(wildcard $(TOOLS)/bin/helm),$(shell command -v helm 2>/dev/null),helm)
INGRESS_NGINX_VERSION ?= controller-v1.12.1
INGRESS_NGINX_MANIFEST ?= https://raw.githubusercontent.com/kubernetes/ingress-nginx/$(INGRESS_NGINX_VERSION)/deploy/static/provider/kind/deploy.yaml
FULLNAME = $(RELEASE)-mnist-platform
KNS = $(KUBECTL) -n $(NAMESPACE)
TRAIN_TIMEOUT ?= 45m
ROLLOUT_EXAMPLE ?= k8s/examples/canary.yaml
# The version that serves before the first rollout (the install-time training publishes version 1).
ROLLOUT_STABLE ?= 1
ROLLOUT_TIMEOUT ?= 20m
SMOKE_URL ?= http://localhost
# Waits for a Job or a ModelRollout and returns as soon as its outcome is known, with the reason (scripts/cluster_wait.py).
CLUSTER_WAIT = $(PYTHON) -m scripts.cluster_wait --namespace $(NAMESPACE) --kubectl "$(KUBECTL)"
SMOKE = $(PYTHON) $(CHART_DIR)/files/smoke_predict.py --url $(SMOKE_URL) --body $(CHART_DIR)/files/smoke-digit.json \
  --expect 7 --api-key "$$($(KNS) get secret $(FULLNAME)-api-keys -o jsonpath='{.data.api-key}' | base64 -d)"

CHECKOV_VENV := $(TOOLS)/checkov-venv
CHECKOV := $(CHECKOV_VENV)/bin/checkov
TEST_DEPS += $(CHECKOV)

.PHONY: checkov check-cluster-tools kind-up deploy train rollout smoke up down

checkov: $(CHECKOV) ## install checkov (pinned) into its own virtualenv, .tools/checkov-venv

$(CHECKOV): tests/chart/checkov-requirements.txt
	@echo "==> installing checkov into $(CHECKOV_VENV) (its pins clash with the services' .venv)"
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	@$(CHECKOV_VENV)/bin/python -m pip install --quiet -r tests/chart/checkov-requirements.txt
	@touch $@

check-cluster-tools:
	@HELM="$(CLUSTER_HELM)" GPU="$(GPU)" NVKIND="$(NVKIND)" k8s/check-tools.sh

kind-up: check-cluster-tools ## kind cluster (kind-config.yaml; GPU=1: nvkind and its template) with ingress-nginx and metrics-server; GPU=1 adds the device plugin
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  echo "==> kind cluster $(KIND_CLUSTER) exists"; \
	else \
	  echo "==> creating kind cluster $(KIND_CLUSTER)$(if $(GPU), with nvkind ($(NVKIND_CONFIG_TEMPLATE)))"; \
	  $(if $(GPU),$(NVKIND) cluster create --name $(KIND_CLUSTER) --config-template $(NVKIND_CONFIG_TEMPLATE) --wait 180s,$(KIND) create cluster --name $(KIND_CLUSTER) --config kind-config.yaml --wait 180s) || exit 1; \
	fi
	@$(KUBECTL) config use-context kind-$(KIND_CLUSTER)
	@echo "==> ingress-nginx ($(INGRESS_NGINX_VERSION))"
	@$(KUBECTL) apply -f $(INGRESS_NGINX_MANIFEST)
	@$(KUBECTL) -n ingress-nginx rollout status deployment/ingress-nginx-controller --timeout=300s
	@echo "==> metrics-server (kind flavour: k8s/metrics-server)"
	@$(KUBECTL) apply -k k8s/metrics-server
	@$(if $(GPU),echo "==> NVIDIA device plugin" && $(KUBECTL) apply -f k8s/nvidia/device-plugin.yaml,true)

deploy: ## helm upgrade --install --wait the chart (first install also trains version 1, which then serves)
	@echo "==> helm upgrade --install $(RELEASE) in namespace $(NAMESPACE) (a first install returns once version 1 is trained)"
	@# --wait: every Deployment ready first (ready but empty before any model: docs/CLUSTER.md), then the
	@# install-time training, a post-install hook that helm waits for: hence the long --timeout.
	@$(CLUSTER_HELM) upgrade --install $(RELEASE) $(CHART_DIR) --namespace $(NAMESPACE) --create-namespace --wait \
	  --timeout $(TRAIN_TIMEOUT) $(if $(GPU),-f $(CHART_DIR)/ci/gpu-values.yaml) $(HELM_EXTRA_ARGS)
	@$(KNS) rollout status deployment/$(FULLNAME)-operator --timeout=300s
	@$(KNS) rollout status deployment/$(FULLNAME)-serving --timeout=300s

train: ## a training Job in the cluster (waits for the install-time one first), then waits for it; stops at a failure
	@if $(KNS) get job $(FULLNAME)-train-initial >/dev/null 2>&1; then \
	  echo "==> waiting for the install-time training (version 1)"; \
	  $(CLUSTER_WAIT) --timeout $(TRAIN_TIMEOUT) job $(FULLNAME)-train-initial \
	    || { $(KNS) logs job/$(FULLNAME)-train-initial --tail=20; exit 1; }; \
	fi
	@job=train-$$(date +%s); echo "==> training Job $$job (from cronjob/$(FULLNAME)-trainer)"; \
	  $(KNS) create job --from=cronjob/$(FULLNAME)-trainer $$job || exit 1; \
	  if $(CLUSTER_WAIT) --timeout $(TRAIN_TIMEOUT) job $$job; then $(KNS) logs job/$$job --tail=5; \
	  else $(KNS) logs job/$$job --tail=20; exit 1; fi
	@$(KNS) get modelversions

rollout: ## apply ROLLOUT_EXAMPLE (canary.yaml; from stable v1 when nothing serves yet) with live traffic; wait for its end
	@# The operator rolls the first version in by itself (<model>-initial): let that finish first.
	@if $(KNS) get modelrollout mnist-initial >/dev/null 2>&1; then \
	  echo "==> the initial rollout of version 1"; $(CLUSTER_WAIT) --timeout $(ROLLOUT_TIMEOUT) rollout mnist-initial || exit 1; \
	fi
	@name=$$($(KUBECTL) patch --local -f $(ROLLOUT_EXAMPLE) --type merge -p '{}' -o jsonpath='{.metadata.name}'); \
	if [ -z "$$($(KNS) get configmap $(FULLNAME)-routing -o jsonpath='{.data.routing\.json}')" ]; then \
	  echo "==> nothing serves yet: $$name starts from stable v$(ROLLOUT_STABLE)"; \
	  $(KUBECTL) patch --local -f $(ROLLOUT_EXAMPLE) --type merge -p '{"spec":{"stableVersion":$(ROLLOUT_STABLE)}}' -o yaml \
	    | $(KNS) apply -f - || exit 1; \
	else \
	  $(KNS) apply -f $(ROLLOUT_EXAMPLE) || exit 1; \
	fi; \
	echo "==> live traffic with feedback while $$name progresses (bounded: 3000 requests, 15 min)"; \
	$(SMOKE) --wait-s 300 --requests 3000 --rate 4 --max-s 900 --feedback & traffic=$$!; \
	$(CLUSTER_WAIT) --timeout $(ROLLOUT_TIMEOUT) rollout $$name; rc=$$?; \
	kill $$traffic 2>/dev/null; $(KNS) get modelrollout $$name; exit $$rc

smoke: ## one real digit through the ingress (http://localhost on kind), checked against its label
	@$(SMOKE) --wait-s 120

up: ## all of it, in order: kind-up images kind-load deploy train rollout smoke
	@$(MAKE) --no-print-directory kind-up
	@$(MAKE) --no-print-directory images
	@$(MAKE) --no-print-directory kind-load
	@$(MAKE) --no-print-directory deploy
	@$(MAKE) --no-print-directory train
	@$(MAKE) --no-print-directory rollout
	@$(MAKE) --no-print-directory smoke
	@echo "==> done: http://localhost/ (API key: make smoke shows how it is read; docs/KIND.md)"

down: ## delete the kind cluster (models on its volumes go with it)
	@$(KIND) delete cluster --name $(KIND_CLUSTER)
