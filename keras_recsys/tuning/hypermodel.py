"""`RecHyperModel`: keras-tuner `HyperModel`s for the toolkit's model builders."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import keras
import keras_tuner
import numpy as np

from keras_recsys.callbacks import MultiTaskEarlyStopping, _resolved_mode
from keras_recsys.features.spec import FeatureSpec
from keras_recsys.models.base import _is_tf_dataset, _keras_arguments
from keras_recsys.tasks import Task, as_tasks
from keras_recsys.tuning.search_spaces import SearchSpace, default_search_space

# keras-tuner's objective when a tuner is made without one (`DefaultObjective`).
_NO_OBJECTIVE = "default_objective"


def with_embedding_dim(spec: FeatureSpec, embedding_dim: int) -> FeatureSpec:
    """A copy of a fitted spec whose `default_embedding_dim` is `embedding_dim`.

    The copy is made from the spec's config, which holds the fitted
    vocabularies, statistics and bucket boundaries, so nothing is adapted
    again: a tuning trial of another embedding size costs no pass over the
    data. Features that set their own `embedding_dim` keep it. The copy
    maps raw values to the same ids as `spec`, so datasets preprocessed
    once with `spec` (`kr.data.from_pandas(df, spec, tasks=...)`) feed
    models built on any copy.

    Args:
        spec: a fitted `FeatureSpec`.
        embedding_dim: the copy's default embedding size.

    Returns:
        `spec` itself when the size is already `embedding_dim`, else a copy.

    Example:

    >>> spec16 = kr.tuning.with_embedding_dim(spec, 16)
    >>> kr.models.DNN(spec16, ["click"]).embedding.tables_config
    """
    spec.check_adapted()
    embedding_dim = int(embedding_dim)
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}.")
    if embedding_dim == spec.default_embedding_dim:
        return spec
    config = spec.get_config()
    config["default_embedding_dim"] = embedding_dim
    return FeatureSpec.from_config(config)


def metric_names(tasks) -> list[str]:
    """The metrics every task logs (by the names they get in the logs), and "loss"."""
    names = None
    for task in as_tasks(tasks):
        own = {m if isinstance(m, str) else getattr(m, "name", None) for m in task.make_metrics()}
        own.add("loss")
        names = own if names is None else names & own
    return sorted(n for n in names if n)


def _checked_metric(tasks, metric: str) -> str:
    known = metric_names(tasks)
    if metric not in known:
        raise ValueError(
            f"No mean of '{metric}' can be made: the tasks "
            f"{[t.name for t in as_tasks(tasks)]} do not all log it. They all log "
            f"{known}; choose the metric among these."
        )
    return metric


def _direction(metric: str, direction: str | None) -> str:
    if direction is not None:
        if direction not in ("min", "max"):
            raise ValueError(f"direction must be 'min' or 'max', got {direction!r}.")
        return direction
    mode = _resolved_mode(metric, "auto")
    if mode == "auto":
        raise ValueError(
            f"Cannot tell whether '{metric}' should go up or down: pass direction='max' "
            "or direction='min'."
        )
    return mode


def objective(tasks, metric: str = "auc", direction: str | None = None) -> keras_tuner.Objective:
    """The keras-tuner objective `val_mean_<metric>`: the mean of one metric over the tasks.

    A `RecHyperModel` writes `val_mean_<metric>` = mean over its tasks of
    `val_<task>_<metric>` into every epoch's logs (with
    `kr.callbacks.MultiTaskEarlyStopping`), so a tuner given this objective
    ranks trials by it. Any single logged value works as an objective too,
    e.g. `keras_tuner.Objective("val_income_auc", direction="max")`.

    Args:
        tasks: the model's tasks (`Task`s or names); the metric must be one
            every task logs.
        metric: the metric name, e.g. "auc" (binary tasks), "logloss",
            "loss", "accuracy" (multiclass), "rmse" (regression).
        direction: "max" or "min"; default: from the metric (AUC and
            accuracy up, losses and errors down).

    Returns:
        `keras_tuner.Objective(f"val_mean_{metric}", direction)`.

    Example:

    >>> tuner = keras_tuner.RandomSearch(
    ...     hypermodel, objective=kr.tuning.objective(tasks, "auc"), max_trials=20)
    """
    metric = _checked_metric(tasks, metric)
    return keras_tuner.Objective(f"val_mean_{metric}", direction=_direction(metric, direction))


def best_hyperparameters(tuner: keras_tuner.Tuner) -> dict[str, Any]:
    """The best trial's hyperparameter values as a plain dict (JSON-ready Python values).

    Hyperband's bookkeeping entries (`tuner/epochs`, `tuner/round`, ...) are
    left out: they say how the tuner scheduled the trial, not how to build
    the model.

    Example:

    >>> tuner.search(train, validation_data=valid, epochs=10)
    >>> json.dumps(kr.tuning.best_hyperparameters(tuner))
    '{"num_experts": 6, "expert_layers": 1, ...}'
    """
    best = tuner.get_best_hyperparameters(num_trials=1)
    if not best:
        raise ValueError("The tuner has no completed trial: run `tuner.search(...)` first.")
    return {
        name: _plain(value)
        for name, value in best[0].values.items()
        if not name.startswith("tuner/")
    }


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def apply_l2(model: keras.Model, l2: float) -> int:
    """Puts an L2 penalty `l2 · Σ w²` on every embedding table and kernel of `model`.

    The weights with two or more axes are penalized (embedding tables,
    dense and cross kernels); biases, normalization scales and the learned
    loss weights are not. The penalty goes through Keras' own mechanism (a
    `regularizer` on the variable), so `model.losses` holds it and `fit`
    adds it to the loss on every backend. It is a training setting: the
    model's config does not record it.

    Returns:
        The number of penalized weights.
    """
    if not l2:
        return 0
    regularizer = keras.regularizers.L2(float(l2))
    count = 0
    for variable in model.trainable_weights:
        if len(variable.shape) >= 2:
            variable.regularizer = regularizer
            count += 1
    return count


class _MeanOfTasks(MultiTaskEarlyStopping):
    """Writes `val_mean_<metric>` into the logs as `MultiTaskEarlyStopping` does,
    without ever stopping (the hypermodel's `patience=None`)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            value = self.combined_value(logs)
            if value is not None:
                logs[self.monitor] = value


class _ObjectiveCheck(keras.callbacks.Callback):
    """Fails the search at a trial's first validated epoch if the tuner's
    objective is not in the logs.

    keras-tuner would otherwise mark every trial invalid one after the
    other and stop only after several, with a KeyError deep in its traces.
    A `FatalValueError` ends the search at once.
    """

    def __init__(self, names: list[str], metric: str):
        super().__init__()
        self.names = names
        self.metric = metric
        self.checked = False
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1
        if self.checked or logs is None:
            return
        if not any(str(k).startswith("val_") for k in logs):
            return  # no validation this epoch (validation_freq): wait for one
        missing = [name for name in self.names if name not in logs]
        if missing:
            hint = ""
            if any(name.startswith("val_mean_") for name in missing):
                hint = (
                    f" This hypermodel writes val_mean_{self.metric} (metric={self.metric!r});"
                    " build it with the metric the objective averages."
                )
            raise keras_tuner.errors.FatalValueError(
                f"The tuner's objective {missing} is not among the logged values "
                f"{sorted(logs)}.{hint} Use kr.tuning.objective(tasks, metric) or "
                "keras_tuner.Objective('val_<task>_<metric>', direction=...)."
            )
        self.checked = True

    def on_train_end(self, logs=None):
        wants_validation = any(name.startswith("val_") for name in self.names)
        if self.epochs and not self.checked and wants_validation:
            raise keras_tuner.errors.FatalValueError(
                f"The tuner's objective {self.names} is a validation value, and the trial "
                "had no validation data: pass validation_data= to tuner.search()."
            )


def _tuner_objective(callbacks: list) -> keras_tuner.Objective | None:
    """The objective of the tuner running this fit, from the callbacks it adds
    (its best-epoch checkpoint holds `objective`; its trial callback the tuner)."""
    for callback in callbacks:
        found = getattr(callback, "objective", None)
        if found is None:
            oracle = getattr(getattr(callback, "tuner", None), "oracle", None)
            found = getattr(oracle, "objective", None)
        if isinstance(found, keras_tuner.Objective):
            return found
    return None


def _objective_names(found: keras_tuner.Objective) -> list[str]:
    # A list of objectives becomes one `MultiObjective` holding them all.
    return list(getattr(found, "name_to_direction", None) or [found.name])


class RecHyperModel(keras_tuner.HyperModel):
    """A keras-tuner `HyperModel` for a keras_recsys model builder.

    `build(hp)` makes a compiled model: the builder's arguments from the
    search space (`SearchSpace.model`), the embedding size from a copy of
    the fitted spec (`with_embedding_dim`: no re-fitting), an L2 penalty on
    the embeddings and kernels (`apply_l2`) and the optimizer at the
    trial's learning rate. `fit(hp, model, ...)` adds
    `kr.callbacks.MultiTaskEarlyStopping`'s mean of `metric` over the tasks
    to every epoch's logs as `val_mean_<metric>` (the objective of
    `kr.tuning.objective`), sets the trial's batch size where it is tuned,
    and stops a tuner whose objective is not logged with a clear error. It
    works with every keras-tuner tuner (`RandomSearch`,
    `BayesianOptimization`, `Hyperband`) on every Keras backend.

    Training data: what `model.fit` takes, given to `tuner.search`. A
    DataFrame is preprocessed again for every trial; for more than a few
    trials preprocess once with the fitted spec
    (`kr.data.from_pandas(df, spec, tasks=tasks, shuffle=True)`), which
    feeds every trial's model: a tuned batch size then re-batches the
    dataset (`rebatch`).

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: the model's tasks.
        builder: the model class (e.g. `kr.models.MMoE`), or any callable
            `(spec, tasks, **arguments) -> RecModel`.
        search_space: a `SearchSpace`; default: the builder's ready-made one
            (`kr.tuning.mmoe_space()` for `MMoE`, ...).
        metric: the metric averaged over the tasks into
            `val_mean_<metric>` (and watched by `patience`).
        direction: "max" or "min" for `metric`; default: from the metric.
        patience: stop a trial after this many epochs without a better
            `val_mean_<metric>` (`MultiTaskEarlyStopping`); None: train every
            epoch asked for. The tuner keeps each trial's best epoch anyway.
        optimizer: an optimizer class, or a callable taking
            `learning_rate=`, called once per model. Default `Adam`.
        model_arguments: fixed builder arguments, under the tuned ones
            (e.g. `{"normalization": "batch"}`).
        compile_arguments: extra `model.compile` arguments (e.g. `loss=`).
        seed: if set, `keras.utils.set_random_seed(seed)` before every
            build, so that trials differ by their hyperparameters only.
        name, tunable: see `keras_tuner.HyperModel`.

    Example:

    >>> hypermodel = kr.tuning.RecHyperModel(spec, tasks, kr.models.MMoE, seed=0)
    >>> tuner = keras_tuner.BayesianOptimization(
    ...     hypermodel, objective=kr.tuning.objective(tasks), max_trials=20,
    ...     directory="tuning", project_name="mmoe")
    >>> train = kr.data.from_pandas(train_df, spec, tasks=tasks, batch_size=1024, shuffle=True)
    >>> valid = kr.data.from_pandas(valid_df, spec, tasks=tasks, batch_size=8192)
    >>> tuner.search(train, validation_data=valid, epochs=10)
    >>> kr.tuning.best_hyperparameters(tuner)
    {'num_experts': 6, 'expert_layers': 1, 'expert_units': 128, ...}
    >>> model = tuner.get_best_models(1)[0]
    """

    def __init__(
        self,
        spec: FeatureSpec,
        tasks,
        builder: Callable[..., keras.Model],
        search_space: SearchSpace | None = None,
        metric: str = "auc",
        direction: str | None = None,
        patience: int | None = None,
        optimizer: Callable[..., keras.optimizers.Optimizer] = keras.optimizers.Adam,
        model_arguments: dict[str, Any] | None = None,
        compile_arguments: dict[str, Any] | None = None,
        seed: int | None = None,
        name: str | None = None,
        tunable: bool = True,
    ):
        super().__init__(name=name, tunable=tunable)
        spec.check_adapted()
        self.spec = spec
        self.tasks: list[Task] = as_tasks(tasks)
        self.builder = builder
        self.search_space = (
            search_space if search_space is not None else default_search_space(builder)
        )
        if not isinstance(self.search_space, SearchSpace):
            raise TypeError(
                f"search_space must be a kr.tuning.SearchSpace, got "
                f"{type(self.search_space).__name__}."
            )
        self.metric = _checked_metric(self.tasks, metric)
        self.direction = _direction(self.metric, direction)
        if patience is not None and int(patience) < 0:
            raise ValueError(f"patience must be >= 0 or None, got {patience}.")
        self.patience = None if patience is None else int(patience)
        self.optimizer = optimizer
        self.model_arguments = dict(model_arguments or {})
        self.compile_arguments = dict(compile_arguments or {})
        if "optimizer" in self.compile_arguments:
            raise ValueError(
                "The optimizer is made per trial at the tuned learning rate: pass "
                "optimizer=<class or factory> instead of compile_arguments['optimizer']."
            )
        self.seed = seed
        self._specs: dict[int, FeatureSpec] = {}

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def objective_name(self) -> str:
        """`val_mean_<metric>`, the value `fit` logs (see `kr.tuning.objective`)."""
        return f"val_mean_{self.metric}"

    def spec_for(self, embedding_dim: int | None) -> FeatureSpec:
        """The fitted spec with this default embedding size (copies made once, kept)."""
        if embedding_dim is None:
            return self.spec
        if embedding_dim not in self._specs:
            self._specs[embedding_dim] = with_embedding_dim(self.spec, embedding_dim)
        return self._specs[embedding_dim]

    def settings(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """What `build` and `fit` make of `hp`, as plain values for the records.

        {"model": the builder's arguments, "embedding_dim", "learning_rate",
        "l2", "batch_size"} (None: not tuned).
        """
        shared = self.search_space.shared_values(hp)
        model = {**self.model_arguments, **self.search_space.model_arguments(hp)}
        return _plain({"model": model, **shared})

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """A compiled model for the hyperparameters `hp`."""
        shared = self.search_space.shared_values(hp)
        arguments = {**self.model_arguments, **self.search_space.model_arguments(hp)}
        spec = self.spec_for(shared["embedding_dim"])
        if self.seed is not None:
            keras.utils.set_random_seed(self.seed)
        model = self.builder(spec, self.tasks, **arguments)
        apply_l2(model, shared["l2"])
        if shared["learning_rate"] is None:
            optimizer = self.optimizer()
        else:
            optimizer = self.optimizer(learning_rate=shared["learning_rate"])
        model.compile(optimizer=optimizer, **self.compile_arguments)
        return model

    def mean_callback(self) -> MultiTaskEarlyStopping:
        """The callback writing `val_mean_<metric>` (and stopping, with `patience`)."""
        if self.patience is None:
            return _MeanOfTasks(self.metric, tasks=self.task_names, mode=self.direction)
        return MultiTaskEarlyStopping(
            self.metric, tasks=self.task_names, mode=self.direction, patience=self.patience
        )

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args, **kwargs):
        """`model.fit(*args, **kwargs)` with the mean metric logged and the tuned batch size.

        The arguments are those given to `tuner.search` (plus the tuner's
        callbacks and, for Hyperband, epochs). Returns the `History`.
        """
        arguments = _keras_arguments(keras.Model.fit, model, args, kwargs)
        given = list(arguments.get("callbacks") or [])
        own = [self.mean_callback()]
        found = _tuner_objective(given)
        if found is not None:
            names = _objective_names(found)
            if names == [_NO_OBJECTIVE]:
                raise keras_tuner.errors.FatalValueError(
                    "The tuner was made without an objective; pass "
                    f"objective=kr.tuning.objective(tasks, {self.metric!r}) (the mean of the "
                    "tasks' validation metric) or keras_tuner.Objective('val_<task>_<metric>', "
                    "direction=...)."
                )
            own.append(_ObjectiveCheck(names, self.metric))
        # First: the tuner's best-epoch checkpoint, listed after, reads the mean.
        arguments["callbacks"] = own + given
        batch_size = self.search_space.shared_values(hp)["batch_size"]
        if batch_size is None:
            return model.fit(**arguments)
        if not _is_tf_dataset(arguments.get("x")):
            arguments["batch_size"] = batch_size
            return model.fit(**arguments)
        arguments["x"] = arguments["x"].rebatch(batch_size)
        with warnings.catch_warnings():
            # A re-batched dataset's length is unknown until it has been read
            # once: Keras finds the first epoch's end by running out of data,
            # as intended here, and would warn about it.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            return model.fit(**arguments)
