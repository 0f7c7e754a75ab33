"""STAR's blocks: partitioned normalization and the star-topology dense layer.

Reference: Sheng et al., 2021, "One Model to Serve All: Star Topology
Adaptive Recommender for Multi-Domain CTR Prediction" (CIKM).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_recsys.layers.scenario.indicator import check_num_scenarios, scenario_one_hot


@keras.saving.register_keras_serializable(package="keras_recsys")
class PartitionedNormalization(keras.layers.Layer):
    """z' = (γ·γ_p)(z − μ_p)/√(σ²_p + ε) + (β + β_p), p the example's scenario.

    γ, β are shared; γ_p (initialized to 1) and β_p (to 0) belong to
    scenario p. In training, μ_p and σ²_p are the mean and (biased)
    variance of the examples of scenario p in the batch, so each example is
    normalized by its own scenario's batch statistics even when a batch
    mixes scenarios, and each scenario present in the batch updates its own
    moving statistics: μ̄_p ← m·μ̄_p + (1 − m)·μ_p (likewise σ̄²_p). At
    inference every example uses its scenario's moving statistics. A
    scenario never seen in training (e.g. the out-of-vocabulary id at
    serving time) falls back to moving statistics of all examples, kept
    beside the per-scenario ones.

    Per-scenario parameters are tables indexed by scenario id, with
    `num_scenarios` rows (reserved ids 0 and 1 included). Written with
    `keras.ops` only (TensorFlow, JAX and PyTorch backends).

    Reference: Sheng et al., 2021, "One Model to Serve All: Star Topology
    Adaptive Recommender for Multi-Domain CTR Prediction" (CIKM), §4.2.

    Args:
        num_scenarios: size of the scenario id space,
            `spec.input_dim(scenario_feature)`.
        momentum: momentum of the moving statistics.
        epsilon: ε added to the variance.

    Example:

    >>> norm = kr.layers.PartitionedNormalization(num_scenarios=6)
    >>> norm(x, scenario_ids, training=True).shape     # x: (B, d)
    (B, d)
    """

    def __init__(self, num_scenarios: int, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.num_scenarios = check_num_scenarios(num_scenarios, "PartitionedNormalization")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        rows = self.num_scenarios
        self.gamma = self.add_weight(name="gamma", shape=(dim,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(dim,), initializer="zeros")
        self.scenario_gamma = self.add_weight(
            name="scenario_gamma", shape=(rows, dim), initializer="ones"
        )
        self.scenario_beta = self.add_weight(
            name="scenario_beta", shape=(rows, dim), initializer="zeros"
        )
        self.moving_mean = self.add_weight(
            name="moving_mean", shape=(rows, dim), initializer="zeros", trainable=False
        )
        self.moving_variance = self.add_weight(
            name="moving_variance", shape=(rows, dim), initializer="ones", trainable=False
        )
        self.seen = self.add_weight(
            name="seen", shape=(rows,), initializer="zeros", trainable=False
        )
        self.global_mean = self.add_weight(
            name="global_mean", shape=(dim,), initializer="zeros", trainable=False
        )
        self.global_variance = self.add_weight(
            name="global_variance", shape=(dim,), initializer="ones", trainable=False
        )
        self.built = True

    def inference_statistics(self):
        """(mean, variance) per scenario id, (S, d), with the global fallback."""
        f32 = [ops.cast(v, "float32") for v in (self.seen, self.moving_mean, self.global_mean)]
        seen, moving_mean, global_mean = f32
        seen = ops.expand_dims(seen, -1)
        mean = seen * moving_mean + (1.0 - seen) * global_mean
        variance = seen * ops.cast(self.moving_variance, "float32") + (1.0 - seen) * ops.cast(
            self.global_variance, "float32"
        )
        return mean, variance

    def call(self, inputs, scenario_ids, training=None):
        x = ops.cast(inputs, "float32")
        one_hot = scenario_one_hot(scenario_ids, self.num_scenarios)  # (B, S)
        if training:
            counts = ops.sum(one_hot, axis=0)  # (S,)
            denominator = ops.expand_dims(ops.maximum(counts, 1.0), -1)
            batch_mean = ops.matmul(ops.transpose(one_hot), x) / denominator
            centered = x - ops.matmul(one_hot, batch_mean)
            batch_variance = ops.matmul(ops.transpose(one_hot), ops.square(centered)) / denominator
            variance = ops.matmul(one_hot, batch_variance)
            self._update_moving(counts, batch_mean, batch_variance, x)
        else:
            mean, var = self.inference_statistics()
            centered = x - ops.matmul(one_hot, mean)
            variance = ops.matmul(one_hot, var)
        normalized = centered * ops.rsqrt(variance + self.epsilon)
        # Statistics in float32 (as Keras' BatchNormalization under mixed precision).
        gamma = ops.cast(self.gamma, "float32") * ops.matmul(
            one_hot, ops.cast(self.scenario_gamma, "float32")
        )
        beta = ops.cast(self.beta, "float32") + ops.matmul(
            one_hot, ops.cast(self.scenario_beta, "float32")
        )
        return ops.cast(gamma * normalized + beta, self.compute_dtype)

    def _update_moving(self, counts, batch_mean, batch_variance, x):
        m = self.momentum
        present = ops.cast(counts > 0, "float32")
        keep = ops.expand_dims(1.0 - (1.0 - m) * present, -1)  # 1 where absent
        step = ops.expand_dims((1.0 - m) * present, -1)
        batch_mean = ops.stop_gradient(batch_mean)
        batch_variance = ops.stop_gradient(batch_variance)
        moving_mean = ops.cast(self.moving_mean, "float32")
        moving_variance = ops.cast(self.moving_variance, "float32")
        self.moving_mean.assign(keep * moving_mean + step * batch_mean)
        self.moving_variance.assign(keep * moving_variance + step * batch_variance)
        self.seen.assign(ops.maximum(ops.cast(self.seen, "float32"), present))
        x = ops.stop_gradient(x)
        global_mean = ops.cast(self.global_mean, "float32")
        global_variance = ops.cast(self.global_variance, "float32")
        self.global_mean.assign(m * global_mean + (1.0 - m) * ops.mean(x, axis=0))
        self.global_variance.assign(m * global_variance + (1.0 - m) * ops.var(x, axis=0))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_scenarios=self.num_scenarios, momentum=self.momentum, epsilon=self.epsilon
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class StarTopologyDense(keras.layers.Layer):
    """y = act(x (W ⊙ W_p) + b + b_p), p the example's scenario.

    W (d_in, units) and b are shared by all scenarios ("the centre of the
    star"); W_p (initialized to 1) and b_p (to 0) are scenario p's, kept in
    tables indexed by scenario id with `num_scenarios` rows. A scenario
    without training data keeps W_p = 1, b_p = 0 and so uses the shared
    layer alone. Computed as one matmul: the input is spread into the
    example's scenario block, [0, .., x, .., 0] (B, S·d_in), and multiplied
    by the stacked W ⊙ W_p (S·d_in, units).

    Reference: Sheng et al., 2021, "One Model to Serve All: Star Topology
    Adaptive Recommender for Multi-Domain CTR Prediction" (CIKM), §4.1.

    Args:
        units: output width.
        num_scenarios: size of the scenario id space,
            `spec.input_dim(scenario_feature)`.
        activation: activation (None: linear).
        kernel_initializer: initializer of the shared W.

    Example:

    >>> dense = kr.layers.StarTopologyDense(64, num_scenarios=6, activation="relu")
    >>> dense(x, scenario_ids).shape
    (B, 64)
    """

    def __init__(
        self,
        units: int,
        num_scenarios: int,
        activation=None,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        self.num_scenarios = check_num_scenarios(num_scenarios, "StarTopologyDense")
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        rows = self.num_scenarios
        self.kernel = self.add_weight(
            name="kernel", shape=(dim, self.units), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.scenario_kernel = self.add_weight(
            name="scenario_kernel", shape=(rows, dim, self.units), initializer="ones"
        )
        self.scenario_bias = self.add_weight(
            name="scenario_bias", shape=(rows, self.units), initializer="zeros"
        )
        self.built = True

    def call(self, inputs, scenario_ids):
        one_hot = scenario_one_hot(scenario_ids, self.num_scenarios, dtype=self.compute_dtype)
        dim = self.kernel.shape[0]
        spread = ops.reshape(
            ops.expand_dims(one_hot, -1) * ops.expand_dims(inputs, 1),
            (-1, self.num_scenarios * dim),
        )
        kernels = ops.reshape(
            self.scenario_kernel * self.kernel, (self.num_scenarios * dim, self.units)
        )
        y = ops.matmul(spread, kernels) + self.bias + ops.matmul(one_hot, self.scenario_bias)
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            num_scenarios=self.num_scenarios,
            activation=keras.activations.serialize(self.activation),
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
