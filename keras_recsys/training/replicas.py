"""A model's own loss under `tf.distribute`: scaled as Keras scales its losses."""

from __future__ import annotations

import keras
from keras import ops


def scale_loss_for_replicas(loss):
    """`loss / num_replicas_in_sync` under a TensorFlow strategy, else `loss`.

    Under `MirroredStrategy` every replica computes the loss of its share of
    the global batch and the replicas' gradients are summed. Keras' compiled
    losses divide by the number of replicas so that the sum is the gradient
    of the global mean (and un-scale the logged value); a model that
    overrides `compute_loss` must do the same, or its gradients and logged
    loss are N times too large under N replicas. JAX and PyTorch shard the
    batch inside one program, where the mean is already global.
    """
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1:
        return loss
    return ops.multiply(loss, ops.cast(1.0 / replicas, loss.dtype))
