"""`DHENLayer`: one layer of DHEN's hierarchy, an ensemble of heterogeneous interaction modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops
from keras_rs.layers import DotInteraction, FeatureCross

from keras_recsys.layers.sequence.transformer import TransformerBlock

INTERACTION_MODULES = ("dot", "self_attention", "dcn", "linear")


def _fresh(initializer: keras.initializers.Initializer) -> keras.initializers.Initializer:
    # One instance per sublayer: a seeded initializer shared by several
    # sublayers would give all of them the same initial weights.
    return keras.initializers.get(keras.initializers.serialize(initializer))


@keras.saving.register_keras_serializable(package="keras_recsys")
class DHENLayer(keras.layers.Layer):
    """Y = LN(W_e · [M_1(X), ..., M_k(X)] + X): heterogeneous modules on one list of vectors.

    X (B, n, d) is a list of n feature vectors of size d (the field
    embeddings, or the previous layer's output). Every interaction module
    M_i reads the whole list and returns a list of the same shape (n, d):

    * `"dot"`: the dot products ⟨x_i, x_j⟩ of every pair i > j (keras-rs
      `DotInteraction`, DLRM's interaction), mapped to n·d by a dense
      layer and reshaped (DHEN's "AdvancedDLRM" module);
    * `"self_attention"`: a Transformer encoder layer over the n vectors
      (`TransformerBlock`, post-norm as in the original Transformer,
      `num_heads` heads, so d must be a multiple of `num_heads`);
    * `"dcn"`: a DCNv2 cross layer (keras-rs `FeatureCross`, full rank or
      rank `dcn_projection_dim`) on the flattened list, reshaped back;
    * `"linear"`: a linear map over the list, M(X) = W X with W (n, n),
      every output vector a learned mix of the input vectors (a choice
      where the paper names a linear module without the shapes: a map
      over the list keeps the parameters at n² rather than (n·d)²).

    The ensemble is combined as MODELS.md specifies: the module outputs are
    concatenated vector by vector, (B, n, k·d), and projected back to d by
    one dense layer W_e shared by the n positions; the shortcut adds X
    (the list keeps its shape, so no projection is needed) and a layer
    normalization over each vector's d units closes the layer. Stacking
    layers composes the modules: with k modules and N layers the model
    holds k^N chains of interactions.

    Reference: Zhang et al., 2022, "DHEN: A Deep and Hierarchical Ensemble
    Network for Large-Scale Click-Through Rate Prediction" (arXiv:2203.11014).

    Args:
        interaction_modules: the modules of the ensemble, names from
            `INTERACTION_MODULES`, each at most once.
        num_heads: attention heads of the "self_attention" module.
        dcn_projection_dim: rank of the "dcn" module's W (None: full rank).
        dropout: dropout rate of the "self_attention" module.
        layer_norm_epsilon: epsilon of the layer normalization.
        kernel_initializer: initializer of the dense kernels.

    Example:

    >>> layer = kr.layers.DHENLayer(["dot", "self_attention", "dcn", "linear"])
    >>> layer(keras.random.normal((4, 5, 8))).shape  # 5 vectors of size 8
    (4, 5, 8)
    """

    def __init__(
        self,
        interaction_modules: Sequence[str] = INTERACTION_MODULES,
        num_heads: int = 2,
        dcn_projection_dim: int | None = None,
        dropout: float = 0.0,
        layer_norm_epsilon: float = 1e-5,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        names = [str(m) for m in interaction_modules]
        unknown = sorted(set(names) - set(INTERACTION_MODULES))
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(
                f"interaction_modules must name distinct modules of {INTERACTION_MODULES}, "
                f"at least one; got {list(interaction_modules)}."
            )
        self.interaction_modules = names
        self.num_heads = int(num_heads)
        self.dcn_projection_dim = None if dcn_projection_dim is None else int(dcn_projection_dim)
        self.dropout = float(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"DHENLayer takes a list of vectors (B, n, d), got {input_shape}.")
        count, dim = int(input_shape[1]), int(input_shape[2])
        policy = self.dtype_policy
        shape = tuple(input_shape)
        flat = (input_shape[0], count * dim)
        if "dot" in self.interaction_modules:
            if count < 2:
                raise ValueError("The 'dot' module needs at least 2 vectors in the list.")
            self.dot = DotInteraction(dtype=policy, name="dot")
            self.dot_projection = keras.layers.Dense(
                count * dim,
                kernel_initializer=_fresh(self.kernel_initializer),
                dtype=policy,
                name="dot_projection",
            )
            self.dot_projection.build((input_shape[0], count * (count - 1) // 2))
        if "self_attention" in self.interaction_modules:
            self.attention = TransformerBlock(
                self.num_heads,
                dropout=self.dropout,
                norm_first=False,
                kernel_initializer=_fresh(self.kernel_initializer),
                dtype=policy,
                name="self_attention",
            )
            self.attention.build(shape)
        if "dcn" in self.interaction_modules:
            self.cross = FeatureCross(
                projection_dim=self.dcn_projection_dim,
                kernel_initializer=_fresh(self.kernel_initializer),
                dtype=policy,
                name="dcn",
            )
            self.cross.build(flat)
            # FeatureCross makes its dense layers in `build` but builds them at
            # the first call; a layer restored from a .keras file gets its
            # weights before any call, so they must exist now.
            if self.dcn_projection_dim is None:
                self.cross.dense.build(flat)
            else:
                self.cross.down_proj_dense.build(flat)
                self.cross.dense.build((input_shape[0], self.dcn_projection_dim))
        if "linear" in self.interaction_modules:
            self.mixing = self.add_weight(
                name="linear_kernel",
                shape=(count, count),
                initializer=_fresh(self.kernel_initializer),
            )
        self.combine = keras.layers.Dense(
            dim,
            kernel_initializer=_fresh(self.kernel_initializer),
            dtype=policy,
            name="combine",
        )
        self.combine.build(shape[:-1] + (len(self.interaction_modules) * dim,))
        self.norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="norm"
        )
        self.norm.build(shape)
        self.built = True

    def module_outputs(self, inputs, training=None) -> dict:
        """{module name: M(X), (B, n, d)}, in `interaction_modules` order."""
        x = ops.cast(inputs, self.compute_dtype)
        count, dim = x.shape[1], x.shape[2]
        outputs = {}
        for name in self.interaction_modules:
            if name == "dot":
                pairs = self.dot([x[:, i] for i in range(count)])
                out = ops.reshape(self.dot_projection(pairs), (-1, count, dim))
            elif name == "self_attention":
                out = self.attention(x, training=training)
            elif name == "dcn":
                flat = ops.reshape(x, (-1, count * dim))
                out = ops.reshape(self.cross(flat), (-1, count, dim))
            else:
                out = ops.einsum("ij,bjd->bid", ops.cast(self.mixing, x.dtype), x)
            outputs[name] = out
        return outputs

    def call(self, inputs, training=None):
        x = ops.cast(inputs, self.compute_dtype)
        outputs = list(self.module_outputs(x, training=training).values())
        ensemble = ops.concatenate(outputs, axis=-1) if len(outputs) > 1 else outputs[0]
        return self.norm(self.combine(ensemble) + x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            interaction_modules=self.interaction_modules,
            num_heads=self.num_heads,
            dcn_projection_dim=self.dcn_projection_dim,
            dropout=self.dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
