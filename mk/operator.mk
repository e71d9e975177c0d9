# The operator (docs/OPERATOR.md): its tests and benchmark on their own.

.PHONY: operator-test operator-bench
operator-test: $(STAMP) $(MNIST_DATA) ## operator tests only (pure core, CRDs, local mode against a real frontend)
	@$(PY) -m pytest tests/operator -q

operator-bench: $(STAMP) $(TOOLS_K8S) ## operator reaction time and memory on a real control plane (docs/BENCHMARKS.md)
	@$(PY) benchmarks/operator_bench.py
