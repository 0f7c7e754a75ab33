"""WuKong's interaction layer: a Factorization Machine Block beside a Linear Compress Block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_recsys.layers.mlp import MLP


def _fresh(initializer: keras.initializers.Initializer) -> keras.initializers.Initializer:
    # One instance per weight: a seeded initializer shared by several
    # weights would give all of them the same initial values.
    return keras.initializers.get(keras.initializers.serialize(initializer))


@keras.saving.register_keras_serializable(package="keras_recsys")
class LinearCompressBlock(keras.layers.Layer):
    """LCB(X) = W X: n_L new embeddings, each a learned mix of the n input embeddings.

    X is (B, n, d) and W is (n_L, n), so the block recombines whole
    embeddings (it never mixes the d units of one embedding) and passes
    the current interaction order on to the next layer unchanged.

    Reference: Zhang et al., 2024, "Wukong: Towards a Scaling Law for
    Large-Scale Recommendation" (ICML) (the Linear Compress Block).

    Args:
        num_embeddings: n_L, the number of output embeddings.
        kernel_initializer: initializer of W.

    Example:

    >>> lcb = kr.layers.LinearCompressBlock(num_embeddings=3)
    >>> lcb(keras.random.normal((4, 5, 8))).shape
    (4, 3, 8)
    """

    def __init__(
        self,
        num_embeddings: int,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(num_embeddings) < 1:
            raise ValueError(
                f"LinearCompressBlock needs num_embeddings >= 1, got {num_embeddings}."
            )
        self.num_embeddings = int(num_embeddings)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"LinearCompressBlock takes embeddings (B, n, d), got {input_shape}.")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.num_embeddings, int(input_shape[1])),
            initializer=_fresh(self.kernel_initializer),
        )
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        return ops.einsum("on,bnd->bod", ops.cast(self.kernel, x.dtype), x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_embeddings, input_shape[2])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_embeddings=self.num_embeddings,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class FactorizationMachineBlock(keras.layers.Layer):
    """FMB(X) = reshape(MLP(LN(flatten(X (Xᵀ Y)))), (n_F, d)).

    The pairwise dot products of the n embeddings, X Xᵀ (n × n), are what
    an FM sums; WuKong keeps them all, compressed by a learned Y (n × k):
    X (Xᵀ Y) is computed right to left, Xᵀ Y first ((d × k), then (n × k)),
    which costs O(n·d·k) instead of the O(n²·d) of X Xᵀ. The n·k
    interactions are flattened and layer-normalized, and an MLP maps
    them to n_F new embeddings of size d (its last layer is linear). Each
    block raises the interaction order: its output embeddings are
    products of two input embeddings.

    Reference: Zhang et al., 2024, "Wukong: Towards a Scaling Law for
    Large-Scale Recommendation" (ICML) (the Factorization Machine
    Block and its low-rank optimization).

    Args:
        num_embeddings: n_F, the number of output embeddings.
        rank: k, the columns of Y.
        hidden_units: widths of the MLP's hidden layers (its output layer
            of n_F·d units is added).
        activation: activation of the MLP's hidden layers.
        dropout: dropout rate of the MLP's hidden layers.
        layer_norm_epsilon: epsilon of the layer normalization.
        kernel_initializer: initializer of Y.

    Example:

    >>> fmb = kr.layers.FactorizationMachineBlock(num_embeddings=3, rank=4,
    ...                                           hidden_units=[32])
    >>> fmb(keras.random.normal((2, 5, 8))).shape
    (2, 3, 8)
    """

    def __init__(
        self,
        num_embeddings: int,
        rank: int = 24,
        hidden_units: Sequence[int] = (512,),
        activation: str = "relu",
        dropout: float = 0.0,
        layer_norm_epsilon: float = 1e-5,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(num_embeddings) < 1 or int(rank) < 1:
            raise ValueError(
                "FactorizationMachineBlock needs num_embeddings >= 1 and rank >= 1, got "
                f"{num_embeddings} and {rank}."
            )
        self.num_embeddings = int(num_embeddings)
        self.rank = int(rank)
        self.hidden_units = [int(u) for u in hidden_units]
        self.activation = activation
        self.dropout = float(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="norm"
        )

    def build(self, input_shape) -> None:
        if len(input_shape) != 3:
            raise ValueError(
                f"FactorizationMachineBlock takes embeddings (B, n, d), got {input_shape}."
            )
        count, dim = int(input_shape[1]), int(input_shape[2])
        self.projection = self.add_weight(
            name="projection",
            shape=(count, self.rank),
            initializer=_fresh(self.kernel_initializer),
        )
        self.norm.build((input_shape[0], count * self.rank))
        self.mlp = MLP(
            [*self.hidden_units, self.num_embeddings * dim],
            self.activation,
            self.dropout,
            output_activation=False,
            dtype=self.dtype_policy,
            name="mlp",
        )
        self.mlp.build((input_shape[0], count * self.rank))
        self.built = True

    def interactions(self, inputs):
        """X (Xᵀ Y), (B, n, k): the compressed pairwise dot products."""
        x = ops.cast(inputs, self.compute_dtype)
        compressed = ops.einsum("bnd,nk->bdk", x, ops.cast(self.projection, x.dtype))
        return ops.einsum("bnd,bdk->bnk", x, compressed)

    def call(self, inputs, training=None):
        dim = inputs.shape[2]
        interactions = self.interactions(inputs)
        flat = ops.reshape(interactions, (-1, interactions.shape[1] * self.rank))
        out = self.mlp(self.norm(flat), training=training)
        return ops.reshape(out, (-1, self.num_embeddings, dim))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_embeddings, input_shape[2])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_embeddings=self.num_embeddings,
            rank=self.rank,
            hidden_units=self.hidden_units,
            activation=self.activation,
            dropout=self.dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class WuKongLayer(keras.layers.Layer):
    """X_{i+1} = LN([FMB(X_i), LCB(X_i)] + R(X_i)): one layer of WuKong's interaction stack.

    The n input embeddings (B, n, d) become n_F + n_L embeddings: n_F from
    a `FactorizationMachineBlock` (interactions of the next order) stacked
    on n_L from a `LinearCompressBlock` (the current orders carried over).
    The residual R(X) is X when n_F + n_L = n, and otherwise a linear map
    of the embeddings (a `LinearCompressBlock` to n_F + n_L, as the paper
    projects the residual when the count changes). The layer normalization
    normalizes every output embedding over its d units (the paper does not
    name the axis). Stacking l layers gives interactions of every order up
    to 2^l; the model scales by the number of layers and by n_F, n_L, k
    and the FMB's MLP.

    Reference: Zhang et al., 2024, "Wukong: Towards a Scaling Law for
    Large-Scale Recommendation" (ICML) (the interaction stack).

    Args:
        num_fmb_embeddings: n_F.
        num_lcb_embeddings: n_L.
        fmb_rank: k, the rank of the FMB's compression Y.
        fmb_hidden_units: hidden widths of the FMB's MLP.
        activation: activation of the FMB's MLP.
        dropout: dropout rate of the FMB's MLP.
        layer_norm_epsilon: epsilon of the layer normalizations.
        kernel_initializer: initializer of Y, the LCB's W and the residual
            projection.

    Example:

    >>> layer = kr.layers.WuKongLayer(num_fmb_embeddings=4, num_lcb_embeddings=4,
    ...                               fmb_rank=4, fmb_hidden_units=[32])
    >>> layer(keras.random.normal((2, 5, 8))).shape  # 5 embeddings in, 4 + 4 out
    (2, 8, 8)
    """

    def __init__(
        self,
        num_fmb_embeddings: int = 16,
        num_lcb_embeddings: int = 16,
        fmb_rank: int = 24,
        fmb_hidden_units: Sequence[int] = (512,),
        activation: str = "relu",
        dropout: float = 0.0,
        layer_norm_epsilon: float = 1e-5,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_fmb_embeddings = int(num_fmb_embeddings)
        self.num_lcb_embeddings = int(num_lcb_embeddings)
        self.fmb_rank = int(fmb_rank)
        self.fmb_hidden_units = [int(u) for u in fmb_hidden_units]
        self.activation = activation
        self.dropout = float(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        policy = self.dtype_policy
        self.fmb = FactorizationMachineBlock(
            self.num_fmb_embeddings,
            self.fmb_rank,
            self.fmb_hidden_units,
            activation,
            self.dropout,
            self.layer_norm_epsilon,
            kernel_initializer=_fresh(self.kernel_initializer),
            dtype=policy,
            name="fmb",
        )
        self.lcb = LinearCompressBlock(
            self.num_lcb_embeddings,
            kernel_initializer=_fresh(self.kernel_initializer),
            dtype=policy,
            name="lcb",
        )
        self.norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="norm"
        )
        self.residual = None

    @property
    def num_embeddings(self) -> int:
        """n_F + n_L, the number of output embeddings."""
        return self.num_fmb_embeddings + self.num_lcb_embeddings

    def build(self, input_shape) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"WuKongLayer takes embeddings (B, n, d), got {input_shape}.")
        shape = tuple(input_shape)
        self.fmb.build(shape)
        self.lcb.build(shape)
        if int(input_shape[1]) != self.num_embeddings:
            self.residual = LinearCompressBlock(
                self.num_embeddings,
                kernel_initializer=_fresh(self.kernel_initializer),
                dtype=self.dtype_policy,
                name="residual",
            )
            self.residual.build(shape)
        self.norm.build((input_shape[0], self.num_embeddings, input_shape[2]))
        self.built = True

    def call(self, inputs, training=None):
        x = ops.cast(inputs, self.compute_dtype)
        out = ops.concatenate([self.fmb(x, training=training), self.lcb(x)], axis=1)
        shortcut = x if self.residual is None else self.residual(x)
        return self.norm(out + shortcut)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_embeddings, input_shape[2])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_fmb_embeddings=self.num_fmb_embeddings,
            num_lcb_embeddings=self.num_lcb_embeddings,
            fmb_rank=self.fmb_rank,
            fmb_hidden_units=self.fmb_hidden_units,
            activation=self.activation,
            dropout=self.dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
