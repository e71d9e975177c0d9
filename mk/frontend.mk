# Frontend targets (services/frontend, tests/frontend, benchmarks/serve_bench.py and frontend_app_bench.py). See docs/FRONTEND.md.

CHROMIUM ?= /usr/bin/chromium
FRONTEND_BENCH_ARGS ?=

TEST_DEPS += chromium

.PHONY: chromium frontend-protos frontend-serve frontend-bench frontend-app-bench

chromium: ## install Debian's chromium for the page's browser test (idempotent; needs root or sudo)
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	echo "==> $(CHROMIUM) is missing: installing Debian's chromium for tests/frontend/test_browser.py"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	  echo "error: need root (or sudo) to run: apt-get update && apt-get install -y chromium" >&2; exit 1; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
	  || { echo "error: apt-get install chromium failed; install it by hand, or deselect with: pytest -m 'not browser'" >&2; exit 1; }; \
	test -x "$(CHROMIUM)" || { echo "error: chromium installed but $(CHROMIUM) is absent; set CHROMIUM=..." >&2; exit 1; }

frontend-protos: $(STAMP) ## regenerate the vendored TF Serving descriptors from tensorflow-serving-api
	@$(PY) -m frontend.tfs_protos.generate

frontend-serve: $(STAMP) ## run the frontend on :8080 with the embedded backend over ./models/mnist
	@$(BIN)/mnist-frontend --backend embedded --model-base-path models/mnist --bind 127.0.0.1:8080

frontend-bench: $(STAMP) $(MNIST_DATA) ## serving benchmark (not part of make test): see docs/BENCHMARKS.md
	@$(PY) benchmarks/serve_bench.py $(FRONTEND_BENCH_ARGS)

frontend-app-bench: $(STAMP) $(MNIST_DATA) ## the frontend's own cost per request, in-process (not part of make test)
	@$(PY) benchmarks/frontend_app_bench.py
