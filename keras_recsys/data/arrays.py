"""Preprocess once: a DataFrame's model inputs as arrays, saved and loaded.

The TensorFlow preprocessing (`kr.data.from_pandas`) stays the source of
truth; `preprocess` runs it once over a whole DataFrame and keeps the
result, so training epochs stop paying for lookups and normalization (on a
2-core CPU the preprocessing otherwise shares the cores with training), and
`PreprocessedArrays.save` writes it for a machine without TensorFlow, which
`load`s it (NumPy only) and trains from it, e.g. through
`kr.data.DeviceDataset`.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

_FORMAT = "keras_recsys.preprocessed/1"


@dataclasses.dataclass
class PreprocessedArrays:
    """Model inputs, labels and sample weights of a set of rows, as NumPy arrays.

    Attributes:
        features: {feature name: array}: what the model reads (int ids,
            float numerics, padded id sequences).
        labels: {task name: array}, or None.
        sample_weights: {task name: array}, or None.
    """

    features: dict[str, np.ndarray]
    labels: dict[str, np.ndarray] | None = None
    sample_weights: dict[str, np.ndarray] | None = None

    @property
    def num_rows(self) -> int:
        return int(len(next(iter(self.features.values()))))

    def as_fit_arguments(self) -> dict:
        """`x`, `y` and `sample_weight`, e.g. `model.fit(**arrays.as_fit_arguments())`."""
        arguments = {"x": self.features}
        if self.labels is not None:
            arguments["y"] = self.labels
        if self.sample_weights is not None:
            arguments["sample_weight"] = self.sample_weights
        return arguments

    def save(self, path: str) -> str:
        """Writes one `.npz` file (uncompressed; NumPy reads it without TensorFlow)."""
        arrays = {f"features/{k}": v for k, v in self.features.items()}
        arrays.update({f"labels/{k}": v for k, v in (self.labels or {}).items()})
        arrays.update({f"sample_weights/{k}": v for k, v in (self.sample_weights or {}).items()})
        header = {
            "format": _FORMAT,
            "labels": self.labels is not None,
            "sample_weights": self.sample_weights is not None,
        }
        np.savez(path, __header__=np.array(json.dumps(header)), **arrays)
        return path if path.endswith(".npz") else path + ".npz"

    @classmethod
    def load(cls, path: str) -> PreprocessedArrays:
        """Reads a file written by `save`."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"No preprocessed arrays at '{path}'.")
        with np.load(path, allow_pickle=False) as stored:
            if "__header__" not in stored.files:
                raise ValueError(
                    f"'{path}' was not written by PreprocessedArrays.save (no header)."
                )
            header = json.loads(str(stored["__header__"]))
            if header.get("format") != _FORMAT:
                raise ValueError(
                    f"'{path}' has format {header.get('format')!r}; this version reads {_FORMAT!r}."
                )
            parts: dict[str, dict[str, np.ndarray]] = {
                "features": {},
                "labels": {},
                "sample_weights": {},
            }
            for key in stored.files:
                if key == "__header__":
                    continue
                part, name = key.split("/", 1)
                parts[part][name] = stored[key]
        return cls(
            parts["features"],
            parts["labels"] if header["labels"] else None,
            parts["sample_weights"] if header["sample_weights"] else None,
        )


def preprocess(
    df,
    model,
    labels: bool | None = None,
    tasks=None,
    batch_size: int = 65_536,
) -> PreprocessedArrays:
    """Runs the spec's TensorFlow preprocessing over a whole DataFrame, once.

    Args:
        df: the rows (pandas DataFrame); every input feature's column present.
        model: a keras_recsys model or a fitted `FeatureSpec`.
        labels, tasks: as in `kr.data.from_pandas`.
        batch_size: rows preprocessed at a time (memory, not results).

    Returns:
        `PreprocessedArrays` with one row per DataFrame row, in order.

    Example:

    >>> arrays = kr.data.preprocess(train_df, model)
    >>> arrays.save("train.npz")      # for a machine without TensorFlow
    >>> model.fit(**arrays.as_fit_arguments(), batch_size=4096)
    """
    from keras_recsys.data.pipeline import from_pandas

    dataset = from_pandas(
        df, model, batch_size=batch_size, shuffle=False, labels=labels, tasks=tasks
    )
    parts: list[dict[str, list[np.ndarray]]] = []
    for element in dataset.as_numpy_iterator():
        element = element if isinstance(element, tuple) else (element,)
        if not parts:
            parts = [{} for _ in element]
        for collected, values in zip(parts, element):
            for name, value in values.items():
                collected.setdefault(name, []).append(value)
    joined = [{name: np.concatenate(chunks) for name, chunks in p.items()} for p in parts]
    joined += [None] * (3 - len(joined))
    return PreprocessedArrays(*joined)
