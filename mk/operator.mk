# The operator (docs/OPERATOR.md): its tests and benchmark on their own.

.PHONY: operator-test operator-bench
operator-test: $(STAMP) $(MNIST_DATA) ## operator tests only (pure core, CRDs, local mode against a real frontend)
	@$(PY) -m pytest tests/operator -q

operator-bench: $(STAMP) ## operator reaction time and memory against the API emulator (docs/BENCHMARKS.md)
	@$(PY) benchmarks/operator_bench.py
