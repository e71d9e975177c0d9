# `make demo` / `make demo-rollback`: the platform end to end on this machine, no cluster (docs/DEMO.md).
# Knobs: DEMO_PORT (frontend port, default 8080), DEMO_EXIT=1 (exit after the summary; exit code 0 only for
# the expected outcome), RETRAIN=1 (train the demo's versions again), DEMO_RATE (digits per second).
# Python too old and no disk space are caught by the $(STAMP) (venv) rule, before anything else runs.

DEMO_PORT ?= 8080
DEMO_EXIT ?=
RETRAIN ?=
DEMO_RATE ?= 15
DEMO_ARGS = --port $(DEMO_PORT) --rate $(DEMO_RATE) \
  $(if $(filter 1 yes true,$(DEMO_EXIT)),--exit) $(if $(filter 1 yes true,$(RETRAIN)),--retrain)

.PHONY: demo demo-rollback
demo: $(STAMP) $(MNIST_DATA) ## train v1+v2, serve, canary v2 under live traffic -> Promoted; serve the page
	@$(PY) -m scripts.demo promote $(DEMO_ARGS)

demo-rollback: $(STAMP) $(MNIST_DATA) ## the same with a broken v3 (shuffled labels) -> automatic RolledBack
	@$(PY) -m scripts.demo rollback $(DEMO_ARGS)
