"""The weight average: its decay, what it averages, what evaluations inside fit() see, what the model keeps."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from trainer.averaging import WeightAverage, average_decay


def test_decay_follows_the_young_weights_then_settles_at_the_cap():
    assert average_decay(1, 0.999) == pytest.approx(2 / 11)
    assert average_decay(90, 0.999) == pytest.approx(91 / 100)
    assert average_decay(10**6, 0.999) == 0.999
    assert average_decay(10**6, 0.9) == 0.9
    steps = [average_decay(n, 0.999) for n in range(1, 5000)]
    assert steps == sorted(steps)


def test_a_decay_outside_zero_to_one_is_refused():
    for decay in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="between 0 and 1"):
            WeightAverage(decay)


def _model() -> keras.Model:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    hidden = keras.layers.BatchNormalization(momentum=0.5, name="bn")(keras.layers.Dense(3, name="dense")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    return model


class _Record(keras.callbacks.Callback):
    """Listed after the average: sees the raw weights after each step, and what an evaluation sees."""

    def __init__(self):
        super().__init__()
        self.after_step, self.at_evaluation = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.after_step.append([w.numpy().copy() for w in self.model.weights])

    def on_test_begin(self, logs=None):
        self.at_evaluation.append((len(self.after_step), [w.numpy().copy() for w in self.model.weights]))


def _expected_average(history: list[list[np.ndarray]], initial: list[np.ndarray], cap: float) -> list[np.ndarray]:
    average = [w.astype(np.float64) for w in initial]
    for n, weights in enumerate(history, start=1):
        decay = average_decay(n, cap)
        average = [decay * a + (1 - decay) * w for a, w in zip(average, weights, strict=True)]
    return average


def test_every_weight_is_averaged_evaluations_see_the_average_and_the_model_keeps_it():
    model = _model()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.normal(size=(64, 2)).astype("float32")
    initial = [w.numpy().copy() for w in model.weights]
    record, average = _Record(), WeightAverage(0.8)
    raw_end, predicted = [], []

    class _AtEpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raw_end.append([w.numpy().copy() for w in self.model.weights])
            # A predict given the average (as benchmarks/train_bench.py evaluates ours) sees it too.
            predicted.append((self.model.predict(x, verbose=0, callbacks=[average]), self.model.predict(x, verbose=0)))

    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, validation_data=(x, y),
              callbacks=[average, record, _AtEpochEnd()])
    names = [w.path for w in model.weights]
    assert any("moving_mean" in n for n in names) and any("moving_variance" in n for n in names)
    # What each per-epoch validation saw: the average up to that step, BN's moving statistics included.
    assert [steps for steps, _ in record.at_evaluation] == [8, 16, 24]
    for steps, seen in record.at_evaluation:
        for got, want in zip(seen, _expected_average(record.after_step[:steps], initial, 0.8), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    clone = _model()
    for (_, seen), (with_average, without) in zip(record.at_evaluation, predicted, strict=True):
        clone.set_weights(seen)
        np.testing.assert_allclose(with_average, clone.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
        assert not np.allclose(with_average, without)
    # After the validation the raw weights are back, so training carried on from them.
    for raw, after_last_step in zip(raw_end, (record.after_step[7], record.after_step[15]), strict=False):
        for a, b in zip(raw, after_last_step, strict=True):
            np.testing.assert_array_equal(a, b)
    # The model ends with the average: the weights that are evaluated at the end and published.
    final = _expected_average(record.after_step, initial, 0.8)
    for got, want in zip((w.numpy() for w in model.weights), final, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(model.weights[0].numpy(), record.after_step[-1][0])
