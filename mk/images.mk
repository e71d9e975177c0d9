# Container images (docs/KIND.md "Images"; build times: docs/DEVELOPMENT.md "Images"):
#   make images         trainer, frontend, operator as docker.io/mnist-platform/<name>:<chart appVersion>
#   make kind-load      the same into the kind cluster's nodes (no registry)
#   make test-images    tests/images alone: every image built FROM a base made here, run as the chart runs it
# Knobs: CONTAINER_ENGINE=docker|podman (default: docker when its daemon answers, else podman), GPU=1 (trainer with
# tensorflow[and-cuda]), EMBEDDED=1 (frontend-embedded, with TensorFlow, instead of frontend: serving on arm64),
# PLATFORM=linux/arm64, PYTHON_IMAGE=<a python:3.11 image> (e.g. a mirror's), LOCAL_BASE=1 (FROM the Debian base
# that scripts/images/base-image.sh makes here: no registry needed), IMAGES="trainer frontend frontend-embedded
# operator" (any of these), IMAGE_TAG, IMAGE_BUILD_FLAGS (passed to every build).

ENGINE := scripts/images/engine.sh
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*$$/\1/p' $(CHART_DIR)/Chart.yaml)
# docker.io/ spelled out: podman would otherwise tag localhost/..., which the kind nodes' containerd does not
# match against the chart's mnist-platform/<name> (= docker.io/mnist-platform/<name>).
IMAGE_REGISTRY ?= docker.io
IMAGE_PREFIX ?= mnist-platform
EMBEDDED ?=
PLATFORM ?=
PYTHON_IMAGE ?=
LOCAL_BASE ?=
IMAGE_BUILD_FLAGS ?=
BUILD_CA_BUNDLE ?= $(firstword $(wildcard /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt))
, := ,
IMAGES ?= trainer $(if $(EMBEDDED),frontend-embedded,frontend) operator
ALL_IMAGES := trainer frontend frontend-embedded operator
IMAGE_LOGS := build/images
# Read once per make run (a commit made meanwhile cannot give two images, or image and test, different ones).
ifeq ($(origin GIT_COMMIT),undefined)
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null)
endif
image_ref = $(IMAGE_REGISTRY)/$(IMAGE_PREFIX)/$(1):$(IMAGE_TAG)

IMAGE_DOCKERFILE_trainer := services/trainer/Dockerfile
IMAGE_DOCKERFILE_frontend := services/frontend/Dockerfile
IMAGE_DOCKERFILE_frontend-embedded := services/frontend/Dockerfile
IMAGE_DOCKERFILE_operator := operator/Dockerfile
IMAGE_ARGS_trainer = $(if $(GPU),--build-arg TF_EXTRAS=and-cuda)
IMAGE_ARGS_frontend-embedded := --build-arg EXTRAS=[embedded]

# LOCAL_BASE: the base made by scripts/images/base-image.sh, reaching PyPI through the host's network.
# BUILD_CA_BUNDLE: the CA certificates pip trusts while it downloads (default: the host's bundle, so a TLS-inspecting
# proxy's CA is trusted as on the host), passed as a build secret: mounted for that one step, never in a layer,
# and no part of any cache key. Empty: pip's own.
ENGINE_NAME = $(eval ENGINE_NAME := $$(shell $(ENGINE) --which 2>/dev/null))$(ENGINE_NAME)
# The Debian architecture of PLATFORM (linux/arm64 -> arm64); empty: this machine's. The local base is made for it.
IMAGE_ARCH = $(if $(PLATFORM),$(lastword $(subst /, ,$(PLATFORM))))
HOST_ARCH := $(patsubst x86_64,amd64,$(patsubst aarch64,arm64,$(shell uname -m)))
FOREIGN_ARCH = $(filter-out $(HOST_ARCH),$(IMAGE_ARCH))
BASE_IMAGE = BASE_ARCH=$(IMAGE_ARCH) scripts/images/base-image.sh
IMAGE_BASE_ARGS = $(if $(LOCAL_BASE),--build-arg PYTHON_IMAGE=$(shell $(BASE_IMAGE) --name) --network host \
  ,$(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE))) \
  $(if $(BUILD_CA_BUNDLE),--secret id=ca-certificates$(,)src=$(BUILD_CA_BUNDLE))

TEST_DEPS += container-engine base-image test-images-build

.PHONY: images kind-load container-engine base-image test-images test-images-build

# One image: the build log goes to build/images/<name>.log; on failure its tail is shown.
define build_image
	@echo "==> $(call image_ref,$(1)): $(IMAGE_DOCKERFILE_$(1)) with $(ENGINE_NAME)$(if $(PLATFORM), for $(PLATFORM))"
	@mkdir -p $(IMAGE_LOGS); started=$$(date +%s); \
	$(ENGINE) build $(IMAGE_BASE_ARGS) $(IMAGE_ARGS_$(1)) $(if $(PLATFORM),--platform $(PLATFORM)) \
	  --build-arg GIT_COMMIT=$(GIT_COMMIT) $(IMAGE_BUILD_FLAGS) -f $(IMAGE_DOCKERFILE_$(1)) -t $(call image_ref,$(1)) . \
	  > $(IMAGE_LOGS)/$(1).log 2>&1 || { tail -n 25 $(IMAGE_LOGS)/$(1).log >&2; \
	  echo "error: building $(1) failed (full log: $(IMAGE_LOGS)/$(1).log)" >&2; exit 1; }; \
	size=$$($(ENGINE) image inspect --format '{{.Size}}' $(call image_ref,$(1))); \
	echo "    built in $$(( $$(date +%s) - started )) s: $$(( size / 1000000 )) MB"

endef

images: $(MNIST_DATA) $(if $(LOCAL_BASE),base-image) ## build the trainer, frontend and operator images (docker or podman; GPU=1, EMBEDDED=1, PLATFORM=...)
	@$(if $(filter-out $(ALL_IMAGES),$(IMAGES)),echo "error: IMAGES: unknown $(filter-out $(ALL_IMAGES),$(IMAGES)) (known: $(ALL_IMAGES))" >&2; exit 2)
	@$(ENGINE) --which >/dev/null
	$(foreach n,$(IMAGES),$(call build_image,$(n)))

kind-load: ## load the images into the kind nodes (no registry needed)
	@$(foreach n,$(IMAGES),echo "==> kind: $(call image_ref,$(n))" && \
	  $(if $(filter podman,$(ENGINE_NAME)),\
	    mkdir -p $(IMAGE_LOGS) && $(ENGINE) save -o $(IMAGE_LOGS)/$(n).tar $(call image_ref,$(n)) && \
	    $(KIND) load image-archive $(IMAGE_LOGS)/$(n).tar --name $(KIND_CLUSTER) && rm -f $(IMAGE_LOGS)/$(n).tar,\
	    $(KIND) load docker-image $(call image_ref,$(n)) --name $(KIND_CLUSTER)) && ) true

# A foreign PLATFORM's builds run its binaries under qemu, through the kernel's binfmt_misc handler.
QEMU_ARCH = $(patsubst amd64,x86_64,$(patsubst arm64,aarch64,$(FOREIGN_ARCH)))

container-engine: ## podman, runc, debootstrap (and qemu-user-static for a foreign PLATFORM) from Debian where missing (idempotent; needs root or sudo)
	@missing="$$($(ENGINE) --which >/dev/null 2>&1 || echo podman runc) $$(command -v debootstrap >/dev/null || echo debootstrap) \
	  $(if $(FOREIGN_ARCH),$$(grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-$(QEMU_ARCH) 2>/dev/null || echo qemu-user-static))"; \
	if [ -z "$${missing// /}" ]; then exit 0; fi; \
	echo "==> installing $$missing from Debian (the image tests build and run containers)"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	  echo "error: need root (or sudo) to run: apt-get install -y $$missing" >&2; exit 1; fi; \
	command -v apt-get >/dev/null || { echo "error: no apt-get: install $$missing by hand" >&2; exit 1; }; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null \
	  || { echo "error: apt-get install $$missing failed" >&2; exit 1; }

base-image: container-engine ## the Debian bookworm + Python 3.11 base image, made here (debootstrap; cached until its recipe changes)
	@$(BASE_IMAGE)

# What tests/images runs: all four images FROM the local base, tagged :test. Under make test and make test-images
# the tests are told the commit they were built from (MNIST_IMAGES_COMMIT) and use them as they are; run on its
# own, pytest tests/images builds them itself (cached layers: seconds to a minute).
# With PLATFORM (make test-images PLATFORM=linux/arm64) they are built for it, tagged test-<arch>, and run under
# qemu-user where that is not this machine's architecture.
test-images-build: $(MNIST_DATA)
	@$(MAKE) --no-print-directory images LOCAL_BASE=1 IMAGE_TAG=test$(if $(IMAGE_ARCH),-$(IMAGE_ARCH)) \
	  IMAGES="$(ALL_IMAGES)" GPU= GIT_COMMIT=$(GIT_COMMIT)

test test-images: export MNIST_IMAGES_COMMIT := $(GIT_COMMIT)
test test-images: export MNIST_IMAGES_PLATFORM := $(PLATFORM)

test-images: $(STAMP) $(MNIST_DATA) $(TOOLS_HELM) $(TOOLS_K8S) test-images-build ## build the images and run tests/images alone (PLATFORM=linux/arm64: those, under qemu)
	@$(PY) -m pytest tests/images $(PYTEST_ARGS)
