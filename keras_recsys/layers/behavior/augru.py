"""`AUGRU`: DIEN's GRU with an attentional update gate."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_recsys")
class AUGRUCell(keras.layers.Layer):
    """One AUGRU step, the input i_t followed by the attention score a_t in its last column.

        u_t  = σ(W_u i_t + U_u h_{t−1} + b_u)
        r_t  = σ(W_r i_t + U_r h_{t−1} + b_r)
        h̃_t  = tanh(W_h i_t + r_t ⊙ (U_h h_{t−1}) + b_h)
        u'_t = a_t · u_t
        h_t  = (1 − u'_t) ⊙ h_{t−1} + u'_t ⊙ h̃_t

    `kernel` is [W_u, W_r, W_h] (d_in, 3·units), `recurrent_kernel`
    [U_u, U_r, U_h] (units, 3·units), `bias` [b_u, b_r, b_h] (3·units).
    Used by `AUGRU` through `keras.layers.RNN`.

    Reference: Zhou et al., 2019, "Deep Interest Evolution Network for
    Click-Through Rate Prediction" (AAAI): its GRU and AUGRU equations.

    Args:
        units: size of the state h.
    """

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.state_size = self.units
        self.output_size = self.units

    def build(self, input_shape) -> None:
        input_dim = int(input_shape[-1]) - 1  # the last column is a_t
        self.kernel = self.add_weight(
            name="kernel", shape=(input_dim, 3 * self.units), initializer="glorot_uniform"
        )
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(self.units, 3 * self.units), initializer="orthogonal"
        )
        self.bias = self.add_weight(name="bias", shape=(3 * self.units,), initializer="zeros")
        self.built = True

    def call(self, inputs, states, training=None):
        previous = states[0] if isinstance(states, (list, tuple)) else states
        x, attention = inputs[:, :-1], inputs[:, -1:]
        projected = ops.matmul(x, self.kernel) + self.bias
        recurrent = ops.matmul(previous, self.recurrent_kernel)
        units = self.units
        update = ops.sigmoid(projected[:, :units] + recurrent[:, :units])
        reset = ops.sigmoid(projected[:, units : 2 * units] + recurrent[:, units : 2 * units])
        candidate = ops.tanh(projected[:, 2 * units :] + reset * recurrent[:, 2 * units :])
        update = attention * update
        state = (1.0 - update) * previous + update * candidate
        return state, [state]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["units"] = self.units
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class AUGRU(keras.layers.Layer):
    """GRU with attentional update gate: u'_t = a_t · u_t scales how far h moves at step t.

    DIEN's interest evolving layer: a step whose attention score a_t is
    near 0 (a behaviour unrelated to the target) leaves the state almost
    unchanged, so the final state follows the interests relevant to the
    target. Steps where `mask` is false are skipped (the state carries
    over), so with front padding the state starts at 0 at the first real
    step. Step equations: see `AUGRUCell`.

    Reference: Zhou et al., 2019, "Deep Interest Evolution Network for
    Click-Through Rate Prediction" (AAAI), the interest evolving layer.

    Args:
        units: size of the state.
        return_sequences: return every step's state (B, L, units) instead
            of the last one (B, units).

    Call arguments:
        inputs: (B, L, d_in) the interest states of the extractor GRU.
        attention: (B, L) the attention scores a_t.
        mask: (B, L), true at real steps; None for all real.

    Example:

    >>> augru = kr.layers.AUGRU(8)
    >>> states = keras.random.normal((4, 20, 8))
    >>> scores = keras.ops.softmax(keras.random.normal((4, 20)))
    >>> augru(states, scores).shape
    (4, 8)
    """

    def __init__(self, units: int, return_sequences: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.return_sequences = bool(return_sequences)
        self.supports_masking = True
        self.cell = AUGRUCell(self.units, dtype=self.dtype_policy, name="cell")
        self.rnn = keras.layers.RNN(
            self.cell,
            return_sequences=self.return_sequences,
            dtype=self.dtype_policy,
            name="rnn",
        )

    def build(self, inputs_shape, attention_shape=None, mask_shape=None) -> None:
        shape = tuple(inputs_shape)
        self.rnn.build(shape[:-1] + (shape[-1] + 1,))
        self.built = True

    def call(self, inputs, attention, mask=None, training=None):
        inputs = ops.cast(inputs, self.compute_dtype)
        attention = ops.expand_dims(ops.cast(attention, self.compute_dtype), -1)
        steps = ops.concatenate([inputs, attention], axis=-1)
        if mask is not None:
            mask = ops.cast(mask, "bool")
        return self.rnn(steps, mask=mask, training=training)

    def compute_mask(self, inputs, attention=None, mask=None):
        return mask if self.return_sequences else None

    def compute_output_shape(self, inputs_shape, attention_shape=None, mask_shape=None):
        if self.return_sequences:
            return tuple(inputs_shape[:-1]) + (self.units,)
        return (inputs_shape[0], self.units)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(units=self.units, return_sequences=self.return_sequences)
        return config
