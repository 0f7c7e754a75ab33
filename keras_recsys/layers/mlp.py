"""`MLP`: the feed-forward block every model uses."""

from __future__ import annotations

from collections.abc import Sequence

import keras


@keras.saving.register_keras_serializable(package="keras_recsys")
class MLP(keras.layers.Layer):
    """A stack of Dense layers: h_{l+1} = dropout(act(norm(W_l h_l + b_l))).

    Args:
        units: width of each hidden layer.
        activation: activation of every layer.
        dropout: dropout rate after each activation (0 disables it).
        normalization: None, "batch" or "layer" normalization before the
            activation.
        output_activation: if False, the last layer is linear (no
            normalization, activation or dropout), for producing logits.

    Example:

    >>> mlp = kr.layers.MLP([256, 128], dropout=0.1)
    >>> mlp(keras.ops.ones((4, 32))).shape
    (4, 128)
    """

    def __init__(
        self,
        units: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        normalization: str | None = None,
        output_activation: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if normalization not in (None, "batch", "layer"):
            raise ValueError(
                f"normalization must be None, 'batch' or 'layer', got {normalization!r}."
            )
        self.units = [int(u) for u in units]
        self.activation = activation
        self.dropout = float(dropout)
        self.normalization = normalization
        self.output_activation = bool(output_activation)
        self.dense_layers = []
        self.norm_layers = []
        self.dropout_layers = []
        for i, width in enumerate(self.units):
            last_linear = not self.output_activation and i == len(self.units) - 1
            self.dense_layers.append(keras.layers.Dense(width, name=f"dense_{i}"))
            norm = None
            if normalization == "batch" and not last_linear:
                norm = keras.layers.BatchNormalization(name=f"batch_norm_{i}")
            elif normalization == "layer" and not last_linear:
                norm = keras.layers.LayerNormalization(name=f"layer_norm_{i}")
            self.norm_layers.append(norm)
            self.dropout_layers.append(
                keras.layers.Dropout(self.dropout, name=f"dropout_{i}")
                if self.dropout > 0 and not last_linear
                else None
            )

    def build(self, input_shape):
        shape = tuple(input_shape)
        for dense, norm in zip(self.dense_layers, self.norm_layers):
            dense.build(shape)
            shape = shape[:-1] + (dense.units,)
            if norm is not None:
                norm.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        last = len(self.dense_layers) - 1
        for i, (dense, norm, dropout) in enumerate(
            zip(self.dense_layers, self.norm_layers, self.dropout_layers)
        ):
            x = dense(x)
            if not self.output_activation and i == last:
                break
            if norm is not None:
                x = norm(x, training=training)
            x = keras.activations.get(self.activation)(x)
            if dropout is not None:
                x = dropout(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            activation=self.activation,
            dropout=self.dropout,
            normalization=self.normalization,
            output_activation=self.output_activation,
        )
        return config
