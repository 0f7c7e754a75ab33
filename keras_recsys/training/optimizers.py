"""The optimizer fix every model's `compile` applies: repeated sparse rows summed first."""

from __future__ import annotations

import keras


def sum_repeated_sparse_gradients(optimizer) -> None:
    """Makes a TensorFlow-backend optimizer sum repeated rows of sparse gradients.

    The gradient of an embedding lookup is a `tf.IndexedSlices` with one row
    per looked-up id, so an id seen k times in a batch appears k times. Keras
    3's TensorFlow optimizers apply such gradients row by row in their
    nonlinear terms (Adam's and RMSprop's g², Adagrad's accumulator square
    each repeat instead of their sum), which gives frequent ids far too large
    steps: the same model trained with Adam diverged on TensorFlow and not on
    JAX or PyTorch. Summing the repeats first (after any cross-replica
    all-reduce, which concatenates slices) gives exactly the dense-gradient
    update of the other backends. No-op on other backends; idempotent.
    """
    if optimizer is None or keras.backend.backend() != "tensorflow":
        return
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        sum_repeated_sparse_gradients(inner)
    if getattr(optimizer, "_recsys_sums_repeats", False):
        return
    import tensorflow as tf

    update_step = optimizer.update_step
    # Adam's (and AdamW's) update is dense anyway: its first use of the
    # gradient, g - m, turns the slices into a dense tensor. For them the sum
    # of the repeats is that same conversion done first (one segment sum into
    # the table's shape; the same sums, bit for bit without XLA), cheaper than tf.unique
    # plus a segment sum: 9% of a DeepFM training step on CPU
    # (benchmarks/bench_ranking.py). Other optimizers keep sparse updates.
    dense_update = isinstance(optimizer, keras.optimizers.Adam)

    def update_step_with_unique_rows(gradient, variable, learning_rate):
        if isinstance(gradient, tf.IndexedSlices):
            if dense_update:
                gradient = tf.convert_to_tensor(gradient)
            else:
                rows, positions = tf.unique(gradient.indices)
                values = tf.math.unsorted_segment_sum(gradient.values, positions, tf.shape(rows)[0])
                gradient = tf.IndexedSlices(values, rows, gradient.dense_shape)
        return update_step(gradient, variable, learning_rate)

    optimizer.update_step = update_step_with_unique_rows
    optimizer._recsys_sums_repeats = True
