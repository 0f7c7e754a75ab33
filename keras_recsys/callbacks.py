"""Keras callbacks for recommender training: early stopping on several tasks at once."""

from __future__ import annotations

import math

import keras

# Metrics whose better values are larger, by the names the tasks give them
# (`Task.make_metrics`) and the usual Keras names; anything ending in "loss"
# is smaller-is-better. Other metrics are looked up among the model's own.
_HIGHER_IS_BETTER = ("auc", "gauc", "accuracy", "precision", "recall", "ndcg")


class MultiTaskEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping on the (weighted) mean of one validation metric over tasks.

    A multi-task model logs one validation value per task (`val_click_auc`,
    `val_like_auc`, ...), while `keras.callbacks.EarlyStopping` watches one
    key. This callback writes m̄ = Σ_k w_k · m_k / Σ_k w_k over the tasks'
    `val_<task>_<metric>` (for a single-task model, Keras' own
    `val_<metric>`) into the epoch's logs as `val_mean_<metric>`, then stops
    exactly as `EarlyStopping` does on that key (patience, min_delta,
    baseline, start_from_epoch, restore_best_weights all keep their Keras
    meaning).

    Because the value is written into the logs, callbacks listed after this
    one (`ReduceLROnPlateau`, `ModelCheckpoint`, `CSVLogger`, `TensorBoard`)
    can monitor `val_mean_<metric>` too, and `fit`'s history records it.

    Args:
        metric: the metric name the tasks log, e.g. "auc" (binary tasks'
            default), "logloss", "loss", "accuracy", "rmse".
        tasks: task names to average over; default: every task of the model.
        weights: {task name: weight} for a weighted mean (the tasks are the
            dict's keys unless `tasks` is given); default: the plain mean.
        mode: "max", "min" or "auto" (from the metric: AUC and accuracy go
            up, losses and errors down; others are looked up among the
            model's compiled metrics, as Keras does).
        **kwargs: `keras.callbacks.EarlyStopping` arguments other than
            `monitor` and `mode` (patience, min_delta, verbose, baseline,
            restore_best_weights, start_from_epoch).

    Example:

    >>> stop = kr.callbacks.MultiTaskEarlyStopping(
    ...     "auc", patience=3, restore_best_weights=True)
    >>> model.fit(train_df, validation_data=valid_df, epochs=30, callbacks=[stop])
    >>> history.history["val_mean_auc"]
    """

    def __init__(
        self,
        metric: str = "auc",
        tasks: list[str] | None = None,
        weights: dict[str, float] | None = None,
        mode: str = "auto",
        **kwargs,
    ):
        if "monitor" in kwargs:
            raise ValueError(
                "MultiTaskEarlyStopping monitors `val_mean_<metric>`; choose the metric "
                "with `metric=` instead of `monitor=`."
            )
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}.")
        if weights is not None:
            for name, weight in weights.items():
                if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
                    raise ValueError(
                        f"weights['{name}'] must be a finite number >= 0, got {weight!r}."
                    )
            if not sum(weights.values()) > 0:
                raise ValueError(f"weights must not all be 0, got {weights}.")
            if tasks is not None and set(tasks) - set(weights):
                raise ValueError(
                    f"weights has no weight for task(s) {sorted(set(tasks) - set(weights))}."
                )
        self.metric = metric
        self.tasks = list(tasks) if tasks is not None else None
        self.weights = {k: float(v) for k, v in weights.items()} if weights else None
        super().__init__(monitor=f"val_mean_{metric}", mode=_resolved_mode(metric, mode), **kwargs)

    def _task_names(self) -> list[str]:
        if self.tasks is not None:
            return self.tasks
        if self.weights is not None:
            return list(self.weights)
        names = getattr(self.model, "task_names", None)
        if names is None:
            raise ValueError(
                "MultiTaskEarlyStopping needs the task names: the model has no "
                "`task_names`; pass `tasks=[...]`."
            )
        return list(names)

    def _log_keys(self, logs: dict) -> dict[str, str]:
        """{task: the logs key of its validation metric}."""
        names = self._task_names()
        keys = {}
        for name in names:
            key = f"val_{name}_{self.metric}"
            if key not in logs and len(names) == 1:
                # One output: Keras does not prefix metric names with the output name.
                key = f"val_{self.metric}"
            keys[name] = key
        return keys

    def combined_value(self, logs: dict) -> float | None:
        """m̄ of these logs, or None on an epoch without validation."""
        keys = self._log_keys(logs)
        missing = [key for key in keys.values() if key not in logs]
        if missing:
            if not any(str(k).startswith("val_") for k in logs):
                return None  # no validation this epoch (validation_freq, or none at all)
            raise KeyError(
                f"MultiTaskEarlyStopping: the validation logs have no {missing}; they "
                f"have {sorted(k for k in logs if str(k).startswith('val_'))}. Choose "
                "`metric=` among the tasks' metrics, or `tasks=` among the model's tasks."
            )
        weights = self.weights or {}
        total = sum(weights.get(name, 1.0) for name in keys)
        return sum(weights.get(name, 1.0) * float(logs[key]) for name, key in keys.items()) / total

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            value = self.combined_value(logs)
            if value is not None:
                logs[self.monitor] = value
        super().on_epoch_end(epoch, logs)

    def _set_monitor_op(self):
        if self.mode == "auto":
            # Keras would look for a metric named "mean_<metric>"; look for <metric>.
            self.mode = "max" if _model_metric_goes_up(self.model, self.metric) else "min"
        super()._set_monitor_op()


def _resolved_mode(metric: str, mode: str) -> str:
    if mode != "auto":
        return mode
    name = metric.lower()
    if name.endswith("loss") or name in ("rmse", "mae", "mse", "logloss", "ne"):
        return "min"
    if name in _HIGHER_IS_BETTER:
        return "max"
    return "auto"


def _model_metric_goes_up(model, metric: str) -> bool:
    """Whether the model's compiled metric `metric` improves upwards (Keras' `_direction`)."""
    found = []

    def visit(m):
        for inner in getattr(m, "metrics", None) or []:
            if inner is not m:
                visit(inner)
        if getattr(m, "name", None) == metric and hasattr(m, "_direction"):
            found.append(m._direction)

    for m in getattr(model, "metrics", []):
        visit(m)
    if not found:
        raise ValueError(
            f"MultiTaskEarlyStopping cannot tell whether '{metric}' should go up or "
            "down: pass mode='max' or mode='min'."
        )
    return found[0] == "up"
