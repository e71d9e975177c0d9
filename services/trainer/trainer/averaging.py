"""An exponential moving average of every weight of the model: the weights that are evaluated and published.

At the high learning rate of a one-cycle schedule's first epochs, consecutive steps jump around a good
solution: the test accuracy of the raw weights swings by points between quarter epochs. Their average over
the last few dozen steps sits nearer the middle, so it is right sooner and more steadily (docs/TRAINER.md,
"Why this recipe"). Every weight is averaged, batch normalisation's moving statistics too, so that the
averaged convolutions are normalised by statistics of about the same steps (Keras' optimizer `use_ema`
averages only the trainable weights, and that mismatch made it worse than no average in our early epochs).
"""

from __future__ import annotations

import keras
import tensorflow as tf

# While few steps have been taken the decay is (1 + n) / (WARMUP + n): the average follows the young
# weights over the last ~n/9 steps instead of remembering its random start.
WARMUP = 10.0


def average_decay(step: int, cap: float) -> float:
    """Decay applied after update number `step` (1-based): min(cap, (1 + step) / (10 + step)). Pure."""
    return min(cap, (1.0 + step) / (WARMUP + step))


class WeightAverage(keras.callbacks.Callback):
    """Keeps the average during fit(); evaluations inside fit() (validation, or predict/evaluate given this
    callback) see the averaged weights; when training ends the model keeps them."""

    def __init__(self, decay: float):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"weight average decay {decay} must be between 0 and 1")
        self.decay = decay
        self._training = False

    def on_train_begin(self, logs=None):
        self._weights = [w for w in self.model.weights if w.dtype in ("float16", "float32", "float64")]
        self._shadows = [tf.Variable(tf.convert_to_tensor(w.value), trainable=False) for w in self._weights]
        self._updates = 0
        self._update = tf.function(self._update_graph)
        self._swap = tf.function(self._swap_graph)
        self._training = True

    def _update_graph(self, decay: tf.Tensor):
        for shadow, weight in zip(self._shadows, self._weights, strict=True):
            value = tf.cast(tf.convert_to_tensor(weight.value), shadow.dtype)
            shadow.assign(decay * shadow + (1.0 - decay) * value)

    def _swap_graph(self):
        for shadow, weight in zip(self._shadows, self._weights, strict=True):
            current = tf.convert_to_tensor(weight.value)
            weight.value.assign(shadow)
            shadow.assign(current)

    def on_train_batch_end(self, batch, logs=None):
        self._updates += 1
        # A tensor argument: a Python float would retrace the function for every new value.
        self._update(tf.constant(average_decay(self._updates, self.decay), tf.float32))

    def _swap_if_training(self, logs=None):
        if self._training:
            self._swap()

    on_test_begin = on_test_end = on_predict_begin = on_predict_end = _swap_if_training

    def on_train_end(self, logs=None):
        self._training = False
        for shadow, weight in zip(self._shadows, self._weights, strict=True):
            weight.assign(shadow)
