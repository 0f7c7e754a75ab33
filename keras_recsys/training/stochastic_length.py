"""Stochastic length (HSTU, §3.3): train on shortened long histories, in batches of like length."""

from __future__ import annotations

import math

import keras
import numpy as np

MODES = ("recent", "sample")


def stochastic_length(
    ids: np.ndarray,
    alpha: float,
    max_length: int,
    rng: np.random.Generator,
    mode: str = "recent",
    aligned: tuple[np.ndarray, ...] = (),
) -> tuple[np.ndarray, ...]:
    """Shortens each long history of a (B, T) front-padded batch, as HSTU trains.

    A row with n real items (ids >= 1: padding is 0) is kept whole with
    probability min(1, N^α / n²), N = `max_length`; otherwise it keeps
    k = ⌊N^(α/2)⌋ of its items: the most recent k (`mode="recent"`, what the
    reference code's `apply_sampling` does, the default) or k drawn
    uniformly without replacement, in their original order (`"sample"`, the
    paper's other variant). So no row costs more than N^α in expectation
    where it cost n² ≤ N². Rows stay right-aligned (front padding); the
    output keeps the width T. `aligned` arrays (timestamps) lose the same
    positions.

    Args:
        ids: (B, T) ids, padded with 0 at the front.
        alpha: α in (1, 2]; 2 keeps every row whole.
        max_length: N.
        rng: the random generator.
        mode: "recent" or "sample".
        aligned: arrays of the shape of `ids` to shorten alike.

    Returns:
        (ids, *aligned), each (B, T).
    """
    if not 1.0 < float(alpha) <= 2.0:
        raise ValueError(f"Stochastic length needs alpha in (1, 2], got {alpha}.")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    ids = np.asarray(ids)
    batch, width = ids.shape
    kept_length = int(math.floor(max_length ** (alpha / 2)))
    lengths = (ids > 0).sum(axis=1)
    keep_whole = rng.random(batch) < np.minimum(
        1.0, max_length**alpha / np.maximum(lengths, 1) ** 2
    )
    out = [np.zeros_like(ids)] + [np.zeros_like(a) for a in aligned]
    for row in range(batch):
        n = int(lengths[row])
        positions = np.arange(width - n, width)
        if not keep_whole[row] and n > kept_length:
            if mode == "recent":
                positions = positions[-kept_length:]
            else:
                positions = np.sort(rng.choice(positions, kept_length, replace=False))
        for target, source in zip(out, (ids, *aligned)):
            target[row, width - len(positions) :] = source[row, positions]
    return tuple(out)


class StochasticLengthBatches(keras.utils.PyDataset):
    """Next-item training batches with stochastic length, grouped by length.

    Every epoch each history (a row of (B, max_length + 1) ids, as
    `training_pair` takes them) is shortened by `stochastic_length`; rows
    are then sorted by their new length (ties broken at random), cut into
    batches, and each batch is trimmed to its longest row, rounded up to
    `multiple` · 2^k (so a jitted step compiles for at most log2(N) widths). In
    a dense padded batch the attention costs B · width², so without the
    grouping one long row in a batch would keep its whole cost; the batches
    come in random order, except that the widest comes first and the
    narrowest second (Keras' TensorFlow adapter reads the input signature
    off the first two). Yields `model.training_pair(ids, timestamps)`.

    Args:
        ids: (U, max_length + 1) front-padded ids of every training history.
        model: the next-item model (its `training_pair` and `max_length`).
        batch_size: rows per batch.
        alpha: α of `stochastic_length` (default: the model's
            `stochastic_length`, e.g. `kr.models.HSTU(spec, stochastic_length=1.6)`).
        mode: "recent" or "sample" (default: the model's
            `stochastic_length_mode`).
        timestamps: optional (U, max_length + 1) times aligned with `ids`.
        multiple: the narrowest batch width; wider ones double it.
        seed: seed of the sampling and the order.
    """

    def __init__(
        self,
        ids: np.ndarray,
        model,
        batch_size: int = 128,
        alpha: float | None = None,
        mode: str | None = None,
        timestamps: np.ndarray | None = None,
        multiple: int = 32,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.ids = np.asarray(ids)
        self.timestamps = None if timestamps is None else np.asarray(timestamps)
        self.model = model
        self.batch_size = int(batch_size)
        if alpha is None:
            alpha = getattr(model, "stochastic_length", None)
        if alpha is None:
            raise ValueError(
                "StochasticLengthBatches needs alpha, or a model built with stochastic_length=α."
            )
        self.alpha = float(alpha)
        self.mode = mode or getattr(model, "stochastic_length_mode", "recent")
        self.multiple = int(multiple)
        self.rng = np.random.default_rng(seed)
        stochastic_length(self.ids[:1], self.alpha, model.max_length, self.rng, self.mode)  # checks
        self.on_epoch_end()

    def on_epoch_end(self) -> None:
        aligned = () if self.timestamps is None else (self.timestamps,)
        shortened = stochastic_length(
            self.ids, self.alpha, self.model.max_length, self.rng, self.mode, aligned
        )
        lengths = (shortened[0] > 0).sum(axis=1)
        order = np.lexsort((self.rng.random(len(lengths)), lengths))
        batches = [
            order[start : start + self.batch_size]
            for start in range(0, len(order), self.batch_size)
        ]
        self.rng.shuffle(batches)
        # Keras' TensorFlow adapter fixes the batch signature from the first two
        # batches: the widest and the narrowest lead, so the width stays free.
        widest = max(range(len(batches)), key=lambda i: lengths[batches[i]].max())
        batches.insert(0, batches.pop(widest))
        narrowest = min(range(1, len(batches)), key=lambda i: lengths[batches[i]].max(), default=0)
        if narrowest:
            batches.insert(1, batches.pop(narrowest))
        self._shortened, self._lengths, self._batches = shortened, lengths, batches

    def __len__(self) -> int:
        return len(self._batches)

    def __getitem__(self, index: int):
        rows = self._batches[index]
        full = self.ids.shape[1]
        longest = max(int(self._lengths[rows].max()), 2)
        # Widths multiple · 2^k: a jitted step compiles for at most log2(N) of them.
        width = self.multiple * 2 ** max(0, math.ceil(math.log2(longest / self.multiple)))
        width = min(full, width)
        ids = self._shortened[0][rows, full - width :]
        timestamps = None if self.timestamps is None else self._shortened[1][rows, full - width :]
        return self.model.training_pair(ids, timestamps)
