"""The optimizer fix every model's `compile` applies: repeated sparse rows summed first."""

from __future__ import annotations

import keras


def sum_repeated_sparse_gradients(optimizer: keras.optimizers.Optimizer | None) -> None:
    """Makes a TensorFlow-backend optimizer sum repeated rows of sparse gradients.

    The gradient of an embedding lookup is a `tf.IndexedSlices` with one row
    per looked-up id, so an id seen k times in a batch appears k times. Keras
    3's TensorFlow optimizers apply such gradients row by row in their
    nonlinear terms (Adam's and RMSprop's g², Adagrad's accumulator square
    each repeat instead of their sum), which gives frequent ids far too large
    steps: the same model trained with Adam diverged on TensorFlow and not on
    JAX or PyTorch. Gradient clipping has the same flaw one step earlier:
    Keras clips in `optimizer.apply`, before the update step, so `clipnorm`
    and `global_clipnorm` measured the norm of the un-summed rows and
    `clipvalue` clipped each repeat instead of their sum.

    This patches the optimizer instance in two places, so that TensorFlow
    gives exactly the dense-gradient update of the other backends:

    * `apply` (which `apply_gradients` and Keras' train step call) sums the
      repeats before Keras clips, when the optimizer clips at all;
    * `update_step` sums them again after any cross-replica all-reduce
      (which concatenates slices, so repeats come back across replicas).

    No-op on other backends; idempotent; a `LossScaleOptimizer`'s inner
    optimizer is patched too. Every `RecModel` and `TopKRecommender` calls it
    from `compile`, so `fit`, `train_on_batch` and GradNorm's step are
    covered. An optimizer used outside those models' `compile` (a custom
    training loop with `optimizer.apply_gradients`, or a plain
    `keras.Model.compile`) is not: call this function on it once before
    training.
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
    apply = optimizer.apply
    # Adam's (and AdamW's) update is dense anyway: its first use of the
    # gradient, g - m, turns the slices into a dense tensor. For them the sum
    # of the repeats is that same conversion done first (one segment sum into
    # the table's shape; the same sums, bit for bit without XLA), cheaper than tf.unique
    # plus a segment sum: 9% of a DeepFM training step on CPU
    # (benchmarks/bench_ranking.py). Other optimizers keep sparse updates.
    dense_update = isinstance(optimizer, keras.optimizers.Adam)

    def summed(gradient):
        if not isinstance(gradient, tf.IndexedSlices):
            return gradient
        if dense_update:
            return tf.convert_to_tensor(gradient)
        rows, positions = tf.unique(gradient.indices)
        values = tf.math.unsorted_segment_sum(gradient.values, positions, tf.shape(rows)[0])
        return tf.IndexedSlices(values, rows, gradient.dense_shape)

    def update_step_with_unique_rows(gradient, variable, learning_rate):
        return update_step(summed(gradient), variable, learning_rate)

    def apply_with_unique_rows(grads, trainable_variables=None):
        # Only a clipping optimizer needs the sum this early (the update step
        # sums anyway); the settings are read at call (trace) time, so one
        # changed after this patch still counts.
        if optimizer.clipnorm or optimizer.global_clipnorm or optimizer.clipvalue:
            grads = [summed(g) for g in grads]
        return apply(grads, trainable_variables)

    optimizer.update_step = update_step_with_unique_rows
    optimizer.apply = apply_with_unique_rows
    optimizer._recsys_sums_repeats = True
