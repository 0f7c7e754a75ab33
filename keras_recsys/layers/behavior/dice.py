"""`Dice`: DIN's data-adaptive activation."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_recsys")
class Dice(keras.layers.Layer):
    """Dice: f(s) = p(s) · s + (1 − p(s)) · α · s, p(s) = σ((s − E[s]) / √(Var[s] + ε)).

    A PReLU whose rectifying point follows the input's distribution: the
    switch p(s) is a smooth step centred on the mean of each unit, scaled by
    its standard deviation. α is learned per unit. In training E[s] and
    Var[s] are the statistics of the batch (over every axis but the last,
    and only over the positions where `mask` is true when one is given);
    they also update moving averages, which inference uses (as batch
    normalization does).

    Reference: Zhou et al., 2018, "Deep Interest Network for Click-Through
    Rate Prediction" (KDD), "Data Adaptive Activation Function".

    Args:
        momentum: of the moving averages: m ← momentum · m + (1 − momentum) · batch.
        epsilon: ε (1e-8 in the paper).
        alpha_initializer: initializer of α (default zeros: the paper's
            control function starts as a soft ReLU).

    Example:

    >>> dice = kr.layers.Dice()
    >>> dice(keras.random.normal((32, 20, 36)), training=True).shape
    (32, 20, 36)
    """

    def __init__(
        self,
        momentum: float = 0.99,
        epsilon: float = 1e-8,
        alpha_initializer: str | keras.initializers.Initializer = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.alpha_initializer = keras.initializers.get(alpha_initializer)
        self.supports_masking = True

    def build(self, input_shape) -> None:
        units = int(input_shape[-1])
        self.alpha = self.add_weight(
            name="alpha", shape=(units,), initializer=self.alpha_initializer
        )
        # float32 statistics also under a mixed policy (not cast to float16 in `call`).
        self.moving_mean = self.add_weight(
            name="moving_mean",
            shape=(units,),
            initializer="zeros",
            trainable=False,
            autocast=False,
        )
        self.moving_variance = self.add_weight(
            name="moving_variance",
            shape=(units,),
            initializer="ones",
            trainable=False,
            autocast=False,
        )
        self.built = True

    def call(self, inputs, mask=None, training=None):
        x = ops.cast(inputs, self.compute_dtype)
        if training:
            # Statistics in float32: a float16 variance of many values loses them.
            values = ops.cast(x, "float32")
            axes = tuple(range(len(x.shape) - 1))
            if mask is None:
                mean = ops.mean(values, axis=axes)
                variance = ops.mean(ops.square(values - mean), axis=axes)
            else:
                weights = ops.expand_dims(ops.cast(mask, "float32"), -1)
                count = ops.maximum(ops.sum(weights, axis=axes), 1.0)
                mean = ops.sum(values * weights, axis=axes) / count
                variance = ops.sum(ops.square(values - mean) * weights, axis=axes) / count
            decay = 1.0 - self.momentum
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * decay)
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * decay)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        mean = ops.cast(mean, self.compute_dtype)
        scale = ops.cast(
            ops.rsqrt(ops.cast(variance, "float32") + self.epsilon), self.compute_dtype
        )
        p = ops.sigmoid((x - mean) * scale)
        alpha = ops.cast(self.alpha, self.compute_dtype)
        return p * x + (1.0 - p) * alpha * x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            momentum=self.momentum,
            epsilon=self.epsilon,
            alpha_initializer=keras.initializers.serialize(self.alpha_initializer),
        )
        return config
