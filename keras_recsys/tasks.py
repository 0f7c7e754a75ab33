"""`Task`: one prediction target of a model, with its loss and metrics."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import pandas as pd

_KINDS = ("binary", "regression", "multiclass")


class Task:
    """A prediction target: its label, kind, loss, metrics and loss weight.

    A model has one output per task, named after the task; `compile` fills
    in each task's loss, loss weight and metrics unless the user passes
    their own.

    Args:
        name: output name (and label column unless `label` is given).
        kind: "binary" (sigmoid, binary cross-entropy, AUC and log loss),
            "regression" (identity, mean squared error, RMSE and MAE) or
            "multiclass" (softmax, sparse categorical cross-entropy,
            accuracy).
        label: label column; defaults to `name`.
        weight: weight of this task's loss in the total loss.
        num_classes: number of classes ("multiclass" only).
        loss: a Keras loss overriding the default of the kind.
        metrics: Keras metrics overriding the defaults of the kind.
        sample_weight: column of per-example loss weights.
        mask: column of 0/1 values; only rows where it is 1 contribute to
            this task's loss (the mean over those rows) and metrics (e.g. a
            conversion task computed over clicked impressions only).
        pos_weight: weight w of the positive examples in the binary
            cross-entropy ("binary" only), for imbalanced labels: the loss
            of logit z and label y is −[w·y·log σ(z) + (1−y)·log(1−σ(z))]
            (`WeightedBinaryCrossentropy`). w > 1 counts each positive as w
            examples (e.g. negatives / positives), w < 1 down-weights them.
            Only the loss changes; the metrics are not weighted. For
            per-example weights use `sample_weight`.

    Example:

    >>> kr.Task("click")
    >>> kr.Task("like", weight=0.5)
    >>> kr.Task("cvr", label="conversion", mask="click")
    >>> kr.Task("purchase", pos_weight=20.0)  # about 1 positive in 20
    """

    def __init__(
        self,
        name: str,
        kind: str = "binary",
        label: str | None = None,
        weight: float = 1.0,
        num_classes: int | None = None,
        loss: Any = None,
        metrics: list | None = None,
        sample_weight: str | None = None,
        mask: str | None = None,
        pos_weight: float | None = None,
    ):
        if kind not in _KINDS:
            raise ValueError(f"Task '{name}': kind must be one of {_KINDS}, got {kind!r}.")
        if kind == "multiclass" and (num_classes is None or num_classes < 2):
            raise ValueError(f"Task '{name}': multiclass needs num_classes >= 2.")
        if kind != "multiclass" and num_classes is not None:
            raise ValueError(f"Task '{name}': num_classes is only for multiclass.")
        self.name = name
        self.kind = kind
        self.label = label or name
        self.weight = float(weight)
        self.num_classes = num_classes
        self.loss = loss
        self.metrics = metrics
        self.sample_weight = sample_weight
        self.mask = mask
        self.pos_weight = _check_pos_weight(name, kind, loss, pos_weight)

    @property
    def units(self) -> int:
        """Width of the task's logit."""
        return self.num_classes if self.kind == "multiclass" else 1

    def activation(self, logits):
        """The task's served output from its logits: sigmoid, softmax or identity."""
        if self.kind == "binary":
            return keras.ops.sigmoid(logits)
        if self.kind == "multiclass":
            return keras.ops.softmax(logits, axis=-1)
        return logits

    def make_loss(self):
        """The task's loss, computed from the model's logits.

        The defaults take logits (`from_logits=True`): a loss on clipped
        probabilities has no gradient once σ(logit) reaches the clip (1e-7),
        and JAX and PyTorch reach it past |logit| ≈ 16 where TensorFlow
        does not, so training would differ by backend. A user `loss` is
        applied to the activated output (what `predict` returns), as a user
        would expect of e.g. "binary_crossentropy".

        With a `mask`, the default loss is reduced with
        "mean_with_sample_weight" (Σ_i m_i·w_i·ℓ_i / Σ_i m_i·w_i), so it is the
        mean over the examples in the task's space rather than over the
        whole batch; a batch without such examples contributes 0.
        """
        if self.loss is not None:
            return OnActivatedOutput(keras.losses.get(self.loss), self.activation)
        reduction = "mean_with_sample_weight" if self.mask is not None else "sum_over_batch_size"
        kwargs = {"name": f"{self.name}_loss", "reduction": reduction}
        if self.kind == "binary" and self.pos_weight is not None:
            return WeightedBinaryCrossentropy(self.pos_weight, **kwargs)
        if self.kind == "binary":
            return keras.losses.BinaryCrossentropy(from_logits=True, **kwargs)
        if self.kind == "multiclass":
            return keras.losses.SparseCategoricalCrossentropy(from_logits=True, **kwargs)
        return keras.losses.MeanSquaredError(**kwargs)

    def make_metrics(self) -> list:
        if self.metrics is not None:
            return list(self.metrics)
        if self.kind == "binary":
            return [
                keras.metrics.AUC(name="auc", num_thresholds=1000),
                keras.metrics.BinaryCrossentropy(name="logloss"),
            ]
        if self.kind == "multiclass":
            return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        return [
            keras.metrics.RootMeanSquaredError(name="rmse"),
            keras.metrics.MeanAbsoluteError(name="mae"),
        ]

    @property
    def uses_sample_weight(self) -> bool:
        return self.sample_weight is not None or self.mask is not None

    def label_array(self, df: pd.DataFrame) -> np.ndarray:
        """Labels of a DataFrame, checked, shaped (N, 1)."""
        if self.label not in df.columns:
            raise KeyError(
                f"Label column '{self.label}' of task '{self.name}' is missing "
                f"from the data; it has columns {list(df.columns)[:12]}."
            )
        column = df[self.label]
        if column.isna().any():
            raise ValueError(
                f"Label column '{self.label}' of task '{self.name}' has "
                f"{int(column.isna().sum())} missing value(s)."
            )
        if self.kind == "multiclass":
            values = pd.to_numeric(column, errors="coerce")
            bad = values.isna() | (values % 1 != 0) | (values < 0) | (values >= self.num_classes)
            if bad.any():
                raise ValueError(
                    f"Label column '{self.label}' of task '{self.name}' must hold "
                    f"class ids in [0, {self.num_classes}); found "
                    f"{_show(column[bad].iloc[0])}."
                )
            return values.to_numpy(dtype=np.int32).reshape(-1, 1)
        values = pd.to_numeric(column, errors="coerce")
        if values.isna().any():
            raise TypeError(
                f"Label column '{self.label}' of task '{self.name}' must be "
                f"numeric; found {_show(column[values.isna()].iloc[0])}."
            )
        if self.kind == "binary" and not values.isin([0, 1]).all():
            raise ValueError(
                f"Label column '{self.label}' of binary task '{self.name}' must "
                f"hold 0/1 (or bools); found {_show(column[~values.isin([0, 1])].iloc[0])}."
            )
        return values.to_numpy(dtype=np.float32).reshape(-1, 1)

    def weight_array(self, df: pd.DataFrame) -> np.ndarray:
        """Per-example loss weights: sample_weight column times mask column."""
        weights = np.ones(len(df), dtype=np.float32)
        for column, what in ((self.sample_weight, "sample_weight"), (self.mask, "mask")):
            if column is None:
                continue
            if column not in df.columns:
                raise KeyError(
                    f"Column '{column}' ({what} of task '{self.name}') is missing from the data."
                )
            values = pd.to_numeric(df[column], errors="coerce").to_numpy(np.float32)
            if np.isnan(values).any():
                raise ValueError(
                    f"Column '{column}' ({what} of task '{self.name}') has "
                    "missing or non-numeric values."
                )
            if what == "mask" and not np.isin(values, (0.0, 1.0)).all():
                bad = values[~np.isin(values, (0.0, 1.0))][0]
                raise ValueError(
                    f"Column '{column}' (mask of task '{self.name}') must hold "
                    f"0/1 (or bools); found {_show(bad)}."
                )
            if np.isinf(values).any() or (values < 0).any():
                raise ValueError(
                    f"Column '{column}' ({what} of task '{self.name}') must hold "
                    "finite, non-negative weights."
                )
            weights = weights * values
        return weights

    def class_weight_table(self, class_weight: dict) -> np.ndarray:
        """Keras' `class_weight` {class id: weight} as a (classes,) float32 table.

        Classes are 0/1 for a binary task and 0 … num_classes − 1 for a
        multiclass one; a class the dict leaves out weighs 1 (so `{1: 10.0}`
        up-weights the positives alone). Used by `RecModel.fit`, which turns
        the table into per-example loss weights of this task.
        """
        if self.kind == "regression":
            raise ValueError(
                f"class_weight needs a binary or multiclass task; task '{self.name}' "
                "is a regression. Use a `sample_weight` column for per-example weights."
            )
        if not isinstance(class_weight, dict):
            raise TypeError(
                f"class_weight must be a dict {{class id: weight}}, got {type(class_weight).__name__}."
            )
        classes = 2 if self.kind == "binary" else self.num_classes
        table = np.ones(classes, dtype=np.float32)
        for key, value in class_weight.items():
            if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
                raise TypeError(f"class_weight keys must be class ids (int), got {key!r}.")
            if not 0 <= key < classes:
                raise ValueError(
                    f"class_weight has class {int(key)}, but task '{self.name}' "
                    f"({self.kind}) has classes 0 to {classes - 1}."
                )
            weight = float(value)
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(
                    f"class_weight[{int(key)}] must be a finite weight >= 0, got {value!r}."
                )
            table[int(key)] = weight
        return table

    def get_config(self) -> dict[str, Any]:
        config = {"name": self.name, "kind": self.kind, "weight": self.weight}
        if self.label != self.name:
            config["label"] = self.label
        for key in ("num_classes", "sample_weight", "mask", "pos_weight"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        if self.loss is not None:
            config["loss"] = keras.saving.serialize_keras_object(self.loss)
        if self.metrics is not None:
            config["metrics"] = [keras.saving.serialize_keras_object(m) for m in self.metrics]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Task:
        config = dict(config)
        if "loss" in config:
            config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        if "metrics" in config:
            config["metrics"] = [
                keras.saving.deserialize_keras_object(m) for m in config["metrics"]
            ]
        return cls(**config)

    def __repr__(self) -> str:
        return f"Task({self.name!r}, kind={self.kind!r}, weight={self.weight})"


def _check_pos_weight(name: str, kind: str, loss, pos_weight) -> float | None:
    """`pos_weight` as a float, or a clear error naming the task."""
    if pos_weight is None:
        return None
    if kind != "binary":
        raise ValueError(
            f"Task '{name}': pos_weight is only for binary tasks (kind='binary'), "
            f"not kind={kind!r}; use `sample_weight` for per-example weights."
        )
    if loss is not None:
        raise ValueError(
            f"Task '{name}': pos_weight weights the default loss; it cannot be "
            "combined with a custom `loss`."
        )
    if isinstance(pos_weight, bool) or not isinstance(pos_weight, (int, float, np.number)):
        raise TypeError(f"Task '{name}': pos_weight must be a positive number, got {pos_weight!r}.")
    value = float(pos_weight)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"Task '{name}': pos_weight must be a finite number > 0, got {pos_weight!r}."
        )
    return value


@keras.saving.register_keras_serializable(package="keras_recsys")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy from logits with positives weighted by `pos_weight`.

    ℓ(y, z) = −[w·y·log σ(z) + (1−y)·log(1−σ(z))]
            = (1−y)·z + (1 + (w−1)·y)·softplus(−z),

    the second form being what is computed: it is finite for any logit and
    keeps its gradient where σ(z) saturates (as `tf.nn.weighted_cross_entropy_with_logits`,
    written with `keras.ops` so it runs on every backend). Per example it is
    the mean over the last axis, like `keras.losses.BinaryCrossentropy`.

    Args:
        pos_weight: w, the weight of the positive term (> 0).

    Example:

    >>> loss = WeightedBinaryCrossentropy(pos_weight=10.0)
    >>> loss(labels, logits)
    """

    def __init__(
        self,
        pos_weight: float,
        name: str = "weighted_binary_crossentropy",
        reduction: str = "sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.pos_weight = float(pos_weight)

    def call(self, y_true, y_pred):
        logits = keras.ops.convert_to_tensor(y_pred)
        labels = keras.ops.cast(y_true, logits.dtype)
        values = (1.0 - labels) * logits + (
            1.0 + (self.pos_weight - 1.0) * labels
        ) * keras.ops.softplus(-logits)
        return keras.ops.mean(values, axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["pos_weight"] = self.pos_weight
        return config


class OnActivatedOutput(keras.losses.Loss):
    """A user's loss applied to a task's activated output instead of its logits."""

    def __init__(self, loss, activation):
        super().__init__(name=getattr(loss, "name", None) or getattr(loss, "__name__", "loss"))
        self.loss = loss
        self.activation = activation

    def __call__(self, y_true, y_pred, sample_weight=None):
        output = self.activation(y_pred)
        if isinstance(self.loss, keras.losses.Loss):
            return self.loss(y_true, output, sample_weight)
        # A plain function: per-example values, averaged over the batch as Keras does.
        values = self.loss(y_true, output)
        if sample_weight is not None:
            weight = keras.ops.cast(sample_weight, values.dtype)
            values = values * keras.ops.reshape(weight, keras.ops.shape(values))
        return keras.ops.mean(values)


def compile_defaults(tasks, loss=None, loss_weights=None, metrics=None, weighted_metrics=None):
    """`compile` arguments filled in from the tasks; explicit ones win.

    Losses (from logits) and loss weights come from each task; metrics go to
    `weighted_metrics`, so a task with a `mask` or `sample_weight` column is
    measured on its own examples.
    """
    if loss is None:
        loss = {t.name: t.make_loss() for t in tasks}
    elif isinstance(loss, dict):
        by_name = {t.name: t for t in tasks}
        loss = {
            name: OnActivatedOutput(keras.losses.get(fn), by_name[name].activation)
            if name in by_name
            else fn
            for name, fn in loss.items()
        }
    elif len(tasks) == 1:
        loss = OnActivatedOutput(keras.losses.get(loss), tasks[0].activation)
    if loss_weights is None and isinstance(loss, dict):
        loss_weights = {t.name: t.weight for t in tasks if t.name in loss}
    if metrics is None and weighted_metrics is None:
        weighted_metrics = {t.name: t.make_metrics() for t in tasks}
    return loss, loss_weights, metrics, weighted_metrics


def column_labels(tasks, y):
    """Binary and regression labels as (B, 1), the outputs' shape, given (B,) or (B, 1).

    Keras' losses accept either shape but its metrics do not, so labels
    from numpy arrays of shape (N,) would fail in `fit` without this.
    """
    if y is None:
        return y
    columns = {t.name for t in tasks if t.kind != "multiclass"}
    if not isinstance(y, dict):
        return keras.ops.reshape(y, (-1, 1)) if len(tasks) == 1 and columns else y
    return {
        name: keras.ops.reshape(label, (-1, 1)) if name in columns and label is not None else label
        for name, label in y.items()
    }


def _show(value) -> str:
    """repr of a value for error messages, NumPy scalars shown as plain Python."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def as_tasks(tasks) -> list[Task]:
    """Normalizes a task argument: a Task, a name, or a list of them."""
    if tasks is None:
        raise ValueError("A model needs at least one Task.")
    if isinstance(tasks, (Task, str)):
        tasks = [tasks]
    result = [Task(t) if isinstance(t, str) else t for t in tasks]
    if not result:
        raise ValueError("A model needs at least one Task.")
    names = [t.name for t in result]
    if len(set(names)) != len(names):
        raise ValueError(f"Task names must be unique, got {names}.")
    return result
