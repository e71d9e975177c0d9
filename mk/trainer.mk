# Trainer targets (docs/TRAINER.md). `train` itself belongs to the cluster path (mk/cluster.mk).
MODEL_BASE_PATH ?= models/mnist
TRAIN_ARGS ?=

.PHONY: train-local bench-train

train-local: $(STAMP) $(MNIST_DATA) ## train with the defaults into ./models/mnist (MODEL_BASE_PATH=..., TRAIN_ARGS=...)
	@echo "==> mnist-train into $(MODEL_BASE_PATH) (40 epochs: about 8 minutes on 2 idle CPU cores, longer on busy ones)"
	@$(BIN)/mnist-train --data $(MNIST_DATA) --model-base-path $(MODEL_BASE_PATH) --register never $(TRAIN_ARGS)

bench-train: $(STAMP) $(MNIST_DATA) ## input pipeline vs in-memory fit (ratio) and time to 99.0% test accuracy
	@$(PY) benchmarks/train_bench.py --data $(MNIST_DATA)
