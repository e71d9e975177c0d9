# Trainer targets (docs/TRAINER.md). `train` itself belongs to the cluster path (mk/cluster.mk).
MODEL_BASE_PATH ?= models/mnist
TRAIN_ARGS ?=
# The real-world evaluation set (docs/TRAINER.md) and the frontend it is sent to.
REALWORLD_SET ?= build/realworld
REALWORLD_COUNT ?= 1000
REALWORLD_URL ?= http://127.0.0.1:8080

.PHONY: train-local bench-train bench-train-compare bench-realworld

train-local: $(STAMP) $(MNIST_DATA) ## train with the defaults into ./models/mnist (MODEL_BASE_PATH=..., TRAIN_ARGS=...)
	@echo "==> mnist-train into $(MODEL_BASE_PATH) (4 members of 13 epochs: about 9 minutes on 2 idle CPU cores, longer on busy ones)"
	@$(BIN)/mnist-train --data $(MNIST_DATA) --model-base-path $(MODEL_BASE_PATH) --register never $(TRAIN_ARGS)

bench-train: $(STAMP) $(MNIST_DATA) ## input pipeline vs in-memory fit (ratio) and time to 99.0% test accuracy
	@$(PY) benchmarks/train_bench.py --data $(MNIST_DATA)

bench-train-compare: $(STAMP) $(MNIST_DATA) ## time to 99.0% of the default recipe against the Keras and PyTorch examples
	@$(PY) benchmarks/train_bench.py --data $(MNIST_DATA) --compare

bench-realworld: $(STAMP) $(MNIST_DATA) ## real-world set through POST /v1/predict of a running frontend (REALWORLD_URL; MNIST_API_KEY)
	@test -f $(REALWORLD_SET)/manifest.json || $(PY) benchmarks/realworld_set.py --data $(MNIST_DATA) \
	  --out $(REALWORLD_SET) --count $(REALWORLD_COUNT)
	@$(PY) benchmarks/realworld_eval.py --set $(REALWORLD_SET) --url $(REALWORLD_URL)
