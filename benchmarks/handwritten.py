"""DeepFM and DCNv2 written directly with Keras 3 (no keras_recsys code).

They are what a practitioner would write by hand for the Criteo-shaped
benchmark data, and compute the same functions as `kr.models.DeepFM` and
`kr.models.DCN(version="v2")` with the same parameters: one 16-d embedding
table per categorical field, the same FM / cross math, the same MLP, a sigmoid
output named "click". `bench_ranking.py` copies the toolkit model's weights
into them and checks that the predictions agree before timing anything.

The inputs are the preprocessed tensors: int ids (B,) per categorical field
and standardized floats (B,) per numeric field.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops
from keras_rs.layers import FeatureCross

_UNIFORM = keras.initializers.RandomUniform(-0.05, 0.05)


class NumericFields(keras.layers.Layer):
    """e_i = x_i · v_i: each numeric feature as a field vector (DeepFM paper)."""

    def __init__(self, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim

    def build(self, input_shape):
        self.vectors = self.add_weight(
            name="vectors", shape=(input_shape[-1], self.dim), initializer=_UNIFORM
        )

    def call(self, x):
        return ops.expand_dims(x, -1) * self.vectors

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.dim)


def _inputs(categorical: Sequence[str], numeric: Sequence[str]) -> dict:
    inputs = {name: keras.Input((), dtype="int32", name=name) for name in categorical}
    inputs.update({name: keras.Input((), dtype="float32", name=name) for name in numeric})
    return inputs


def _mlp(x, hidden_units: Sequence[int]):
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"mlp_{i}")(x)
    return x


def deepfm(
    categorical: Sequence[str],
    numeric: Sequence[str],
    input_dim: int,
    embedding_dim: int = 16,
    hidden_units: Sequence[int] = (256, 128),
) -> keras.Model:
    """sigmoid(LR(x) + FM(e_1..e_F) + head(MLP([e_1..e_F, x_dense])))."""
    inputs = _inputs(categorical, numeric)
    dense = ops.stack([inputs[name] for name in numeric], axis=1)  # (B, 13)
    embedded = [
        keras.layers.Embedding(
            input_dim, embedding_dim, embeddings_initializer=_UNIFORM, name=f"emb_{name}"
        )(inputs[name])
        for name in categorical
    ]
    fields = ops.concatenate(
        [ops.stack(embedded, axis=1), NumericFields(embedding_dim, name="numeric_fields")(dense)],
        axis=1,
    )  # (B, 26 + 13, 16)

    # First order: one scalar weight per id, a linear layer on the numerics.
    linear = [
        keras.layers.Embedding(input_dim, 1, embeddings_initializer="zeros", name=f"lin_{name}")(
            inputs[name]
        )
        for name in categorical
    ]
    linear = keras.layers.Add()([*linear, keras.layers.Dense(1, name="lin_dense")(dense)])

    # Second order: 0.5 * sum_k[(sum_i e_ik)^2 - sum_i e_ik^2].
    fm = 0.5 * ops.sum(
        ops.square(ops.sum(fields, axis=1)) - ops.sum(ops.square(fields), axis=1),
        axis=-1,
        keepdims=True,
    )

    x0 = ops.concatenate(
        [ops.reshape(fields, (-1, fields.shape[1] * embedding_dim)), dense], axis=-1
    )
    deep = keras.layers.Dense(1, name="head")(_mlp(x0, hidden_units))
    click = keras.layers.Activation("sigmoid", name="click")(linear + fm + deep)
    return keras.Model(inputs, {"click": click}, name="handwritten_deepfm")


def dcn_v2(
    categorical: Sequence[str],
    numeric: Sequence[str],
    input_dim: int,
    embedding_dim: int = 16,
    hidden_units: Sequence[int] = (256, 128),
    num_cross_layers: int = 3,
) -> keras.Model:
    """sigmoid(head(MLP(cross^L(x0)))), x_{l+1} = x0 ⊙ (W_l x_l + b_l) + x_l."""
    inputs = _inputs(categorical, numeric)
    embedded = [
        keras.layers.Embedding(
            input_dim, embedding_dim, embeddings_initializer=_UNIFORM, name=f"emb_{name}"
        )(inputs[name])
        for name in categorical
    ]
    dense = ops.stack([inputs[name] for name in numeric], axis=1)
    x0 = ops.concatenate([*embedded, dense], axis=-1)  # (B, 26 * 16 + 13)
    x = x0
    for i in range(num_cross_layers):
        x = FeatureCross(name=f"cross_{i}")(x0, x)
    logit = keras.layers.Dense(1, name="head")(_mlp(x, hidden_units))
    click = keras.layers.Activation("sigmoid", name="click")(logit)
    return keras.Model(inputs, {"click": click}, name="handwritten_dcn_v2")


class SummedSparseAdam(keras.optimizers.Adam):
    """Adam that adds up the repeated rows of a sparse gradient before its update.

    On the TensorFlow backend the gradient of an embedding lookup is a
    `tf.IndexedSlices` with one row per looked-up id; Keras' Adam squares those
    rows one by one (Σ g_i² instead of (Σ g_i)² for an id seen several times in
    a batch). Turning the gradient into a dense tensor first gives the update
    of the JAX and PyTorch backends, which is also what keras_recsys models do
    on TensorFlow; this is the hand-written way to get the same math, for the
    `hand-written+sum` baseline. Other backends: plain Adam.
    """

    def update_step(self, gradient, variable, learning_rate):
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if isinstance(gradient, tf.IndexedSlices):
                gradient = tf.convert_to_tensor(gradient)
        return super().update_step(gradient, variable, learning_rate)


# ----------------------------------------------------- equivalence checking
def _assign(target, source) -> None:
    if tuple(target.shape) != tuple(source.shape):
        raise ValueError(f"shape mismatch: {target.path} {target.shape} vs {source.shape}")
    target.assign(ops.convert_to_numpy(source))


def _copy_dense(target: keras.layers.Layer, source: keras.layers.Layer) -> None:
    _assign(target.kernel, source.kernel)
    if source.bias is not None:
        _assign(target.bias, source.bias)


def copy_toolkit_weights(toolkit: keras.Model, hand: keras.Model, kind: str) -> None:
    """Gives `hand` the weights of the toolkit model (to check they compute the same)."""
    embedding = toolkit.embedding
    for name, table in embedding.fields:
        _assign(hand.get_layer(f"emb_{name}").embeddings, embedding.table_weights(table))
    for i, dense in enumerate(toolkit.backbone.mlp.dense_layers):
        _copy_dense(hand.get_layer(f"mlp_{i}"), dense)
    _copy_dense(hand.get_layer("head"), toolkit.heads.heads["click"])
    if kind == "deepfm":
        _assign(hand.get_layer("numeric_fields").vectors, embedding.numeric_vectors)
        for name, layer in toolkit.backbone.linear.weights_by_feature.items():
            _assign(hand.get_layer(f"lin_{name}").embeddings, layer.embeddings)
        _assign(hand.get_layer("lin_dense").kernel, toolkit.backbone.linear.dense_layer.kernel)
        _assign(hand.get_layer("lin_dense").bias, toolkit.backbone.linear.bias)
    else:
        for i, layer in enumerate(toolkit.backbone.cross_layers):
            _copy_dense(hand.get_layer(f"cross_{i}").dense, layer.dense)
