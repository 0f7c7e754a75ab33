"""Multi-worker data-parallel training with Keras 3 `fit` on TensorFlow.

Keras 3 (checked with 3.15.1 on TensorFlow 2.21) cannot run `fit`,
`evaluate` or `predict` under `tf.distribute.MultiWorkerMirroredStrategy`
once there is more than one worker, whatever the inputs are, and its
message names dict inputs (keras-team/keras#20329 is open):

1. Before the first step, `TensorFlowTrainer._maybe_symbolic_build` calls
   `strategy.reduce("MEAN", batch, axis=None)` on the whole first batch,
   a nest such as `({"user_id": PerReplica, ...}, labels)`.
   `Strategy.reduce` takes one value, not a nest. `MirroredStrategy` and a
   one-worker `MultiWorkerMirroredStrategy` never look inside the nest (it
   is "not distributed" to them), but with two or more workers the nest
   reaches the collective all-reduce, which calls `tf.convert_to_tensor`
   on it: "Attempt to convert a value ({'a': PerReplica...}) with an
   unsupported type (<class 'dict'>) to a Tensor". A tuple of plain
   tensors fails the same way, naming `PerReplica`. Distributing the
   dataset yourself (`experimental_distribute_dataset`) or changing the
   auto-shard policy (DATA, OFF) changes nothing: the batch reaching the
   reduce is a nest of per-replica values in every case.
2. After each step, `reduce_per_replica` averages the logs across workers
   with `strategy.reduce("MEAN", value, axis=0)`. The logs are scalars,
   and `axis=0` on a scalar fails ("Invalid reduction dimension 0 for
   input with 0 dimensions").

`MultiWorkerMirroredStrategy` below is the TensorFlow strategy with a
`reduce` that handles both calls the way their callers mean: a nest is
reduced leaf by leaf, and a scalar is reduced across replicas (`axis`
only names a dimension a scalar does not have). Everything else is
TensorFlow's strategy unchanged: `fit`, `evaluate`, `predict`, callbacks,
`kr.data` pipelines (dicts of preprocessed int and float tensors) and the
automatic sharding of the input.
"""

from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf


def _local_value(value: Any) -> Any:
    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value


class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`tf.distribute.MultiWorkerMirroredStrategy` that Keras 3 `fit` can train with.

    Synchronous data parallelism over several machines (workers), each with
    one or more devices; the cluster comes from the `TF_CONFIG` environment
    variable as for TensorFlow's strategy, and every worker runs the same
    program. Only `reduce` differs from TensorFlow's class (see the module
    docstring for the two Keras 3 calls it fixes), so this is a drop-in
    replacement wherever the TensorFlow strategy is accepted.

    The input pipeline needs nothing special. `kr.data` datasets are
    sharded by TensorFlow (auto-shard policy DATA for in-memory data and
    CSV/Parquet generators: every worker reads all rows and keeps its
    share of each global batch), so `batch_size` is the global batch,
    split across all replicas of all workers. Shuffle with a fixed `seed`
    so that all workers see the same order; unseeded shuffles differ per
    worker and the shards would overlap.

    Write checkpoints and exports from the chief only (`is_chief()`); the
    other workers must still run the same `fit` / `evaluate` calls, which
    synchronize all workers at every step.

    Args:
        cluster_resolver: as for `tf.distribute.MultiWorkerMirroredStrategy`
            (default: read `TF_CONFIG`).
        communication_options: as for TensorFlow's strategy.

    Example:

    >>> from keras_recsys.data.multi_worker import MultiWorkerMirroredStrategy, is_chief
    >>> # On every worker, with TF_CONFIG set for that worker:
    >>> strategy = MultiWorkerMirroredStrategy()
    >>> with strategy.scope():
    ...     model = kr.models.DCN(spec, "click")
    ...     model.compile(optimizer="adagrad")
    >>> data = kr.data.from_pandas(df, model, batch_size=4096, shuffle=True, seed=0)
    >>> callbacks = [keras.callbacks.ModelCheckpoint("ckpt.keras")] if is_chief() else []
    >>> model.fit(data, epochs=3, callbacks=callbacks)
    >>> if is_chief():
    ...     model.export("exports/dcn")
    """

    def reduce(self, reduce_op, value, axis):
        if isinstance(value, (dict, list, tuple)):
            # Keras passes a whole batch to build the model from: reduce each tensor.
            return tf.nest.map_structure(lambda v: self.reduce(reduce_op, v, axis), value)
        local = _local_value(value)
        if axis is not None and getattr(local, "shape", None) is not None:
            if local.shape.rank == 0:
                # Keras averages scalar logs with axis=0; a scalar has no axis 0.
                axis = None
        return super().reduce(reduce_op, value, axis)


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes checkpoints and exports.

    The chief is the `chief` task when the cluster has one, otherwise
    worker 0; a process outside any cluster (no `TF_CONFIG`) is its own
    chief.

    Args:
        strategy: the strategy whose cluster to read; default: the current
            strategy's, or `TF_CONFIG` when it has none.

    Example:

    >>> from keras_recsys.data.multi_worker import is_chief
    >>> if is_chief():
    ...     model.export("exports/dcn")
    """
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.task_type is not None:
        task_type, task_id = resolver.task_type, resolver.task_id
        has_chief = "chief" in resolver.cluster_spec().as_dict()
    else:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        task = config.get("task") or {}
        task_type, task_id = task.get("type"), task.get("index", 0)
        has_chief = "chief" in (config.get("cluster") or {})
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and int(task_id or 0) == 0 and not has_chief
