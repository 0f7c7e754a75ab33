"""`DeviceDataset`: preprocessed arrays kept on the accelerator, batched there.

`fit` on NumPy arrays slices, shuffles and copies every batch on the host;
on a GPU that input path, not the model, limits training (measured on one
H200: Keras `fit` on NumPy stops near 7M examples/s for DeepFM while the
same math in plain JAX runs at 62M; see `benchmarks/bench_fit_jax.py`).
A `DeviceDataset` copies the preprocessed arrays to the device once, draws
each epoch's permutation there and gathers every batch there in one
compiled call, so a training step only dispatches work: nothing crosses
the host-device link after the first epoch.

It is a `keras.utils.PyDataset`, so it goes to an ordinary `model.fit`,
`evaluate` or `predict`, on every backend. On JAX the batch gather is one
jitted function (one dispatch for all features); on TensorFlow and PyTorch
the same gather runs op by op on whatever device the backend places
tensors on. It needs the data to fit in device memory; for bigger data use
the `tf.data` pipelines (`kr.data.from_pandas`, `from_parquet`), which
stream.

The arrays are what the model reads, already preprocessed: the output of
`kr.data.preprocess` (TensorFlow preprocessing, the source of truth), or of
`PreprocessedArrays.load` on a machine without TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np


def _as_dict(value, what: str) -> dict[str, np.ndarray] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(
            f"DeviceDataset takes {what} as a dict of arrays by name, got {type(value).__name__}."
        )
    return {str(name): np.asarray(array) for name, array in value.items()}


def _check_rows(parts: dict[str, dict[str, np.ndarray] | None]) -> int:
    rows: dict[str, int] = {}
    for what, arrays in parts.items():
        for name, array in (arrays or {}).items():
            if array.ndim == 0:
                raise ValueError(
                    f"DeviceDataset: {what} '{name}' is a scalar; expected one row per example."
                )
            rows[f"{what} '{name}'"] = int(array.shape[0])
    if not rows:
        raise ValueError("DeviceDataset got no arrays.")
    if len(set(rows.values())) > 1:
        raise ValueError(f"DeviceDataset: arrays have different numbers of rows: {rows}.")
    count = next(iter(rows.values()))
    if count == 0:
        raise ValueError("DeviceDataset got arrays with no rows.")
    return count


class DeviceDataset(keras.utils.PyDataset):
    """Preprocessed `(x, y, sample_weight)` arrays on the device, batched on the device.

    Every epoch draws a new permutation of the rows (with `shuffle=True`) on
    the device; batch `i` gathers rows `perm[i*B : (i+1)*B]` of every array in
    one call. Feed it to `fit` like any dataset; `steps_per_execution` pays
    once batches come this cheaply.

    Args:
        x: {feature name: array} of preprocessed model inputs (int ids,
            float numerics, padded id sequences), one row per example.
        y: {task name: array} of labels, or None (for `predict`).
        sample_weight: {task name: array}, or None.
        batch_size: rows per batch.
        shuffle: draw a new row order every epoch.
        seed: seed of the row orders (epoch e uses seed + e), None for a
            random one.
        drop_remainder: drop the last incomplete batch (keeps every batch
            the same shape, so compiled steps never recompile).

    Example:

    >>> arrays = kr.data.preprocess(train_df, model)        # TensorFlow, once
    >>> train = kr.data.DeviceDataset(arrays.features, arrays.labels,
    ...                               batch_size=32768, seed=0)
    >>> model.compile(steps_per_execution=32)
    >>> model.fit(train, epochs=3)
    """

    def __init__(
        self,
        x: Mapping[str, Any],
        y: Mapping[str, Any] | None = None,
        sample_weight: Mapping[str, Any] | None = None,
        batch_size: int = 4096,
        shuffle: bool = True,
        seed: int | None = None,
        drop_remainder: bool = False,
    ):
        # One thread, no multiprocessing: the work per batch is one dispatch.
        super().__init__(workers=1, use_multiprocessing=False)
        if int(batch_size) < 1:
            raise ValueError(f"DeviceDataset: batch_size must be >= 1, got {batch_size}.")
        parts = {
            "x": _as_dict(x, "x"),
            "y": _as_dict(y, "y"),
            "sample_weight": _as_dict(sample_weight, "sample_weight"),
        }
        if parts["sample_weight"] is not None and parts["y"] is None:
            raise ValueError("DeviceDataset: sample_weight needs labels (y).")
        self.num_rows = _check_rows(parts)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else int(seed)
        self.drop_remainder = bool(drop_remainder)
        if self.drop_remainder and self.num_rows < self.batch_size:
            raise ValueError(
                f"DeviceDataset: {self.num_rows} rows make no full batch of {self.batch_size} "
                "with drop_remainder=True."
            )
        self._backend = keras.backend.backend()
        # Tuple order (x, y, sample_weight) as Keras unpacks a batch.
        self._arrays = tuple(
            None if arrays is None else {k: self._to_device(v) for k, v in arrays.items()}
            for arrays in (parts["x"], parts["y"], parts["sample_weight"])
        )
        while self._arrays and self._arrays[-1] is None:
            self._arrays = self._arrays[:-1]
        self._epoch = 0
        self._order = self._draw_order()
        self._gather = self._make_gather()

    # ------------------------------------------------------------ PyDataset
    @property
    def num_batches(self) -> int:
        if self.drop_remainder:
            return self.num_rows // self.batch_size
        return math.ceil(self.num_rows / self.batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, index: int):
        if not 0 <= index < self.num_batches:
            raise IndexError(f"DeviceDataset has {self.num_batches} batches, asked for {index}.")
        start = index * self.batch_size
        size = min(self.batch_size, self.num_rows - start)
        batch = self._gather(self._arrays, self._order, start, size)
        return batch if len(batch) > 1 else batch[0]

    def on_epoch_end(self) -> None:
        self._epoch += 1
        if self.shuffle:
            self._order = self._draw_order()

    # ------------------------------------------------------------- helpers
    def _to_device(self, array: np.ndarray):
        if self._backend == "jax":
            import jax

            return jax.device_put(array)
        return keras.ops.convert_to_tensor(array)

    def _draw_order(self):
        if self._backend == "jax":
            import jax
            import jax.numpy as jnp

            if not self.shuffle:
                return jnp.arange(self.num_rows, dtype=jnp.int32)
            key = jax.random.key(self.seed + self._epoch)
            return jax.random.permutation(key, self.num_rows).astype(jnp.int32)
        if not self.shuffle:
            order = np.arange(self.num_rows, dtype=np.int32)
        else:
            rng = np.random.default_rng(self.seed + self._epoch)
            order = rng.permutation(self.num_rows).astype(np.int32)
        return keras.ops.convert_to_tensor(order)

    def _make_gather(self):
        if self._backend == "jax":
            import jax
            from jax import lax

            def gather(arrays, order, start, size):
                rows = lax.dynamic_slice_in_dim(order, start, size)
                return jax.tree_util.tree_map(lambda a: a[rows], arrays)

            # `size` is static (two values at most: the batch size and the
            # last batch's); `start` is traced, so no recompiling per batch.
            return jax.jit(gather, static_argnums=3)

        def gather(arrays, order, start, size):
            rows = order[start : start + size]
            return tuple(
                None
                if part is None
                else {k: keras.ops.take(v, rows, axis=0) for k, v in part.items()}
                for part in arrays
            )

        return gather
