"""`LearnedTokens`: n trained token vectors, the same for every example (INFNet's task tokens)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_recsys")
class LearnedTokens(keras.layers.Layer):
    """n learned d-vectors, repeated over the batch: (B, n, d).

    INFNet's task tokens T (one per task) and shared task tokens T̃ are
    such parameters: they carry no input of their own and gather what their
    task needs from the feature tokens through the cross attention.

    Args:
        num_tokens: n.
        dim: d.
        initializer: initializer of the (n, d) table.

    Example:

    >>> tokens = kr.layers.infnet.LearnedTokens(num_tokens=3, dim=8)
    >>> tokens(batch_size_from=keras.ops.ones((4, 7, 8))).shape
    (4, 3, 8)
    """

    def __init__(
        self,
        num_tokens: int,
        dim: int,
        initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_tokens) < 1 or int(dim) < 1:
            raise ValueError(f"num_tokens and dim must be positive, got {num_tokens}, {dim}.")
        self.num_tokens = int(num_tokens)
        self.dim = int(dim)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape=None):
        self.tokens = self.add_weight(
            name="tokens", shape=(self.num_tokens, self.dim), initializer=self.initializer
        )
        self.built = True

    def call(self, batch_size_from):
        """Any tensor whose first axis is the batch → (B, n, d)."""
        batch = ops.shape(batch_size_from)[0]
        tokens = ops.cast(self.tokens, self.compute_dtype)
        return ops.broadcast_to(ops.expand_dims(tokens, 0), (batch, self.num_tokens, self.dim))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_tokens, self.dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_tokens=self.num_tokens,
            dim=self.dim,
            initializer=keras.initializers.serialize(self.initializer),
        )
        return config
