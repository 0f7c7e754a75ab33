"""`FactorizationMachine`: the second-order FM interaction."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_recsys")
class FactorizationMachine(keras.layers.Layer):
    """Pairwise interactions Σ_{i<j} <e_i, e_j> in O(F·d).

    y = 0.5 · Σ_k [(Σ_i e_ik)² − Σ_i e_ik²] for field embeddings e of shape
    (B, F, d); output (B, 1).

    Reference: Rendle, 2010, "Factorization Machines".

    Example:

    >>> fm = kr.layers.FactorizationMachine()
    >>> fm(keras.ops.ones((2, 3, 4)))  # 3 pairs x 4 dims -> 12
    """

    def call(self, fields):
        square_of_sum = ops.square(ops.sum(fields, axis=1))
        sum_of_squares = ops.sum(ops.square(fields), axis=1)
        return 0.5 * ops.sum(square_of_sum - sum_of_squares, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)
