"""`FusedEmbedding`: several embedding tables of one width stored as one array."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_recsys")
class FusedEmbedding(keras.layers.Layer):
    """Embedding tables of the same width kept in one (Σ V_t, d) variable.

    Table t owns rows [offset_t, offset_t + V_t); id i of table t reads row
    offset_t + i. The function is exactly that of one `keras.layers.Embedding`
    per table; what changes is the number of kernels: looking up F fields
    is one gather instead of F, their backward pass one scatter-add, and the
    optimizer updates one variable instead of F (three per table with Adam).
    On an accelerator, where each of those small kernels costs more to
    launch than to run, that is the difference (`benchmarks/bench_fit_jax.py`).
    Row layout differs from per-table weights, so checkpoints of a fused
    and an unfused model are not interchangeable; the SavedModel's
    signature is the same.

    Args:
        input_dims: {table name: rows}, in row order.
        output_dim: width d of every table.
        embeddings_initializer: initializer of the whole array (Keras'
            `Embedding` default, so each table starts as it would alone).
        embeddings_regularizer: regularizer of the whole array (for L1/L2
            the sum over the tables, as when they are separate).

    Example:

    >>> fused = kr.layers.FusedEmbedding({"user": 100, "item": 50}, 8)
    >>> fused.lookup("item", ops.array([0, 49])).shape
    (2, 8)
    >>> fused.lookup_stacked([("user", u), ("item", i)]).shape  # u, i: (B,)
    (B, 2, 8)
    """

    def __init__(
        self,
        input_dims: dict[str, int],
        output_dim: int,
        embeddings_initializer: Any = "uniform",
        embeddings_regularizer: Any = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not input_dims:
            raise ValueError(f"FusedEmbedding '{self.name}' got no tables.")
        self.input_dims = {str(k): int(v) for k, v in input_dims.items()}
        bad = {k: v for k, v in self.input_dims.items() if v < 1}
        if bad:
            raise ValueError(f"FusedEmbedding '{self.name}': tables need >= 1 row, got {bad}.")
        self.output_dim = int(output_dim)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
        self.offsets: dict[str, int] = {}
        total = 0
        for name, rows in self.input_dims.items():
            self.offsets[name] = total
            total += rows
        self.total_rows = total

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.total_rows, self.output_dim),
            initializer=self.embeddings_initializer,
            regularizer=self.embeddings_regularizer,
            # Under a mixed policy, gather rows of the float32 table and cast
            # them, never the whole table: `lookup` runs inside the calling
            # layer's autocast scope, and a cast table would cost a full
            # copy each step and a low-precision scatter-add in the gradient.
            autocast=False,
        )
        self.built = True

    def _check(self, table: str) -> int:
        if table not in self.offsets:
            raise KeyError(
                f"FusedEmbedding '{self.name}' has no table '{table}'; it has {list(self.offsets)}."
            )
        return self.offsets[table]

    def lookup(self, table: str, ids):
        """Rows of `table` for `ids` of any shape: (*ids.shape, d)."""
        offset = self._check(table)
        ids = ops.cast(ids, "int32")
        rows = ops.take(self.embeddings, ids + offset if offset else ids, axis=0)
        return ops.cast(rows, self.compute_dtype)

    def lookup_stacked(self, pairs: list[tuple[str, Any]]):
        """One gather for several (table, ids (B,)) pairs: (B, len(pairs), d)."""
        offsets = [self._check(table) for table, _ in pairs]
        ids = ops.stack([ops.cast(ids, "int32") for _, ids in pairs], axis=1)
        ids = ids + ops.convert_to_tensor(offsets, dtype="int32")
        return ops.cast(ops.take(self.embeddings, ids, axis=0), self.compute_dtype)

    def table(self, name: str):
        """The current weights of one table, (V_t, d) (a slice: for reading)."""
        offset = self._check(name)
        return self.embeddings[offset : offset + self.input_dims[name]]

    def call(self, inputs: dict):
        """{table name: ids} -> {table name: rows}."""
        return {table: self.lookup(table, ids) for table, ids in inputs.items()}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            input_dims=self.input_dims,
            output_dim=self.output_dim,
            embeddings_initializer=keras.initializers.serialize(self.embeddings_initializer),
            embeddings_regularizer=keras.regularizers.serialize(self.embeddings_regularizer)
            if self.embeddings_regularizer
            else None,
        )
        return config
