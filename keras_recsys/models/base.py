"""`RecModel`: the base class every model builder derives from."""

from __future__ import annotations

import inspect
import re
import warnings
from typing import Any

import keras
import numpy as np
import pandas as pd
from keras import ops

from keras_recsys.features.spec import FeatureSpec
from keras_recsys.heads.pointwise import TaskHeads
from keras_recsys.layers.embedding import FeatureEmbedding
from keras_recsys.layers.scenario.indicator import ScenarioIndicatorTower, scenario_tower_config
from keras_recsys.models.backbone import (
    Backbone,
    dummy_inputs,
    preprocessed_input_specs,
    split_units,
)
from keras_recsys.tasks import Task, as_tasks, column_labels, compile_defaults
from keras_recsys.training import gradnorm, loss_combiner
from keras_recsys.training.compile_config import RememberedCompile
from keras_recsys.training.fused_steps import FusedJaxSteps
from keras_recsys.training.optimizers import sum_repeated_sparse_gradients


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", name).lower()


# Rows per batch when a DataFrame is given without `batch_size`: the default
# of `kr.data.from_pandas`, which `fit(df)` and friends are shorthand for.
DATAFRAME_BATCH_SIZE = 1024

_USE_A_DATAFRAME = (
    "Pass the DataFrame itself (model.fit(df), model.evaluate(df), "
    "model.predict(df)) or a dataset from kr.data.from_pandas(df, model); "
    "both apply the spec's preprocessing."
)


def _is_tf_dataset(x) -> bool:
    # Without importing TensorFlow: `import keras_recsys` must not load it.
    return hasattr(x, "element_spec") and "tensorflow" in type(x).__module__


def _keras_arguments(method, model, args: tuple, kwargs: dict) -> dict:
    """The arguments of a Keras `Model` method call by name (positional ones too)."""
    bound = inspect.signature(method).bind(model, *args, **kwargs)
    arguments = dict(bound.arguments)
    arguments.pop("self")
    arguments.update(arguments.pop("kwargs", {}))
    return arguments


def _class_weighted_dataset(dataset, task_name: str, table: np.ndarray):
    """(x, y[, w]) batches with w × class_weight[y] as the task's sample weights."""
    import tensorflow as tf

    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise ValueError(
            "class_weight needs (features, labels) or (features, labels, sample_weights) "
            f"batches; the dataset's elements are {spec}."
        )
    lookup = tf.constant(table)

    def weighted(x, y, w=None):
        label = y[task_name] if isinstance(y, dict) else y
        weight = tf.gather(lookup, tf.reshape(tf.cast(label, tf.int32), [-1]))
        if isinstance(w, dict):
            w = dict(w)
            w[task_name] = tf.reshape(tf.cast(w[task_name], tf.float32), [-1]) * weight
        elif w is not None:
            w = tf.reshape(tf.cast(w, tf.float32), [-1]) * weight
        elif isinstance(y, dict):
            w = {task_name: weight}
        else:
            w = weight
        return x, y, w

    return dataset.map(weighted, num_parallel_calls=tf.data.AUTOTUNE)


def _served_shape(value):
    """(B, 1) → (B,), as the export serves binary and regression outputs."""
    if len(value.shape) == 2 and value.shape[-1] == 1:
        return ops.squeeze(value, axis=-1)
    return value


@keras.saving.register_keras_serializable(package="keras_recsys")
class RecModel(FusedJaxSteps, RememberedCompile, keras.Model):
    """A pointwise model: a `Backbone`, one linear head per task, one loss combiner.

    Built from a fitted `FeatureSpec` and a list of `Task`s. Subclasses (the
    zoo's builders) call `super().__init__`, then set `self.backbone` to
    their `Backbone` (made with `backbone_arguments()`) and call
    `build_now()`; a model file then reads as the paper draws it: which
    body, which heads. The backbone returns `"hidden"` (what the task heads
    read) and optionally logit-level `"logits"` terms; the model's logits
    are `heads(hidden) + logits`. Calling the model returns those logits
    (float32, also under a mixed-precision policy): the losses read logits,
    never clipped probabilities. `predict`, `predict_outputs` and the
    export return the served outputs (`serving_outputs`: sigmoid, softmax or
    identity by task kind) shaped as the export serves them: (B,) for
    binary and regression tasks, (B, num_classes) for multiclass ones. The
    metrics see the served values too. `compile` fills in losses and
    metrics from the tasks (`keras_recsys.tasks.compile_defaults`), the spec
    and the tasks serialize with the model, and `export` writes a
    SavedModel.

    `fit`, `evaluate` and `predict` take a pandas DataFrame (preprocessed
    through `kr.data.from_pandas` with the model's spec and tasks), a
    `tf.data.Dataset` of preprocessed batches, or dicts of preprocessed
    arrays keyed by feature name.

    `RecModel` itself takes any `Backbone` (`backbone=`): a body of one's
    own becomes a model with the toolkit's heads, losses, fit, save and
    export (see `Backbone`'s example).

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: one `Task` (or task name), or a list of them.
        backbone: a `Backbone` built on `spec` whose `task_units` are the
            tasks' (`{task.name: task.units}`), for a model of one's own; the
            zoo's builders make theirs and do not take this argument.
        numeric_field_dim: embed numeric features as fields of this size
            (for models whose interactions read fields only); None keeps them
            as a dense vector.
        scenario_tower: add a scenario-indicator shallow tower
            (`ScenarioIndicatorTower`) whose logit is added to every task
            logit: True for the defaults (on the spec's `role="scenario"`
            feature), or a dict of its arguments (`features`,
            `embedding_dim`, `hidden_units`, `dropout`, `activation`).
        loss_weighting: how the task losses L_k add up to the training loss:
            "fixed": Σ_k w_k · L_k with each task's `weight` (Keras
            `loss_weights`); "uncertainty": Σ_k exp(−s_k) · L_k + s_k with
            learned log-variances s_k (Kendall et al., 2018; task weights
            are not used); "gradnorm": Σ_k w_k · L_k with w_k learned by
            GradNorm (Chen et al., 2018), starting from the task weights;
            each step also takes every task's gradient norm on
            `gradnorm_variables()`: a backward pass per task (on JAX also a
            second forward pass). See
            `keras_recsys.training.loss_weighting`.
        gradnorm_alpha: GradNorm's α (with `loss_weighting="gradnorm"`).
        oov_dropout: in training, the rate at which a categorical or sequence
            id becomes the out-of-vocabulary id, so that values unseen at
            serving time read a trained vector instead of a random one (see
            `FeatureEmbedding`). Default 0 (off, as before); 0.01 is the
            recommended setting: on census with unseen categories injected
            in 30% of the test rows it lowered their log loss at no cost on
            the normal test split (`recipes/results/oov/census_oov.json`).
    """

    # False for models whose output layer lives in the backbone (its
    # "logits"), e.g. STAR's scenario-conditioned output layer.
    uses_task_heads = True

    def __init__(
        self,
        spec: FeatureSpec,
        tasks,
        numeric_field_dim=None,
        scenario_tower=False,
        loss_weighting: str = "fixed",
        gradnorm_alpha: float = 1.5,
        oov_dropout: float = 0.0,
        backbone: Backbone | None = None,
        **kwargs,
    ):
        if isinstance(spec, dict):
            spec = FeatureSpec.from_config(spec)
        kwargs.setdefault("name", _snake(type(self).__name__))
        super().__init__(**kwargs)
        spec.check_adapted()
        self.spec = spec
        self._tasks = tuple(
            Task.from_config(t) if isinstance(t, dict) else t for t in as_tasks(tasks)
        )
        self.oov_dropout = float(oov_dropout)
        self.numeric_field_dim = numeric_field_dim
        self.backbone: Backbone | None = None  # set by the subclass, or given
        # A builder's front end is made first, before the heads: unseeded Keras
        # initializers draw their seeds when a layer is made, so this order
        # keeps the initial weights (and the stored recipe results) those of
        # the models before the backbone split. Not tracked here: the
        # backbone owns it (`backbone_arguments`).
        front_end = None
        if backbone is None:
            front_end = FeatureEmbedding.from_spec(
                spec, numeric_field_dim=numeric_field_dim, oov_dropout=oov_dropout, name="embedding"
            )
        object.__setattr__(self, "_front_end", front_end)
        self.heads = TaskHeads(self.head_units(), name="heads") if self.uses_task_heads else None
        self.loss_weighting = loss_weighting
        self.gradnorm_alpha = float(gradnorm_alpha)
        self.loss_weighter = loss_combiner.make_loss_weighter(
            loss_weighting, self._tasks, self.gradnorm_alpha
        )
        self.scenario_tower_config = scenario_tower_config(scenario_tower)
        self.scenario_logit_tower = None
        if self.scenario_tower_config is not None:
            self.scenario_logit_tower = ScenarioIndicatorTower.from_spec(
                spec,
                units=sum(t.units for t in self._tasks),
                name="scenario_tower",
                **self.scenario_tower_config,
            )
        if backbone is not None:
            if numeric_field_dim is not None or oov_dropout:
                raise ValueError(
                    "numeric_field_dim and oov_dropout shape the embedding front end, "
                    "which a given backbone owns: pass them to the backbone."
                )
            self._check_backbone(backbone)
            self.backbone = backbone
            self.build_now()

    def _check_backbone(self, backbone) -> None:
        if not isinstance(backbone, Backbone):
            raise TypeError(
                f"backbone must be a keras_recsys Backbone (features -> {{'hidden': ...}}), "
                f"got {type(backbone).__name__}."
            )
        if type(self) is not RecModel:
            raise TypeError(
                f"{type(self).__name__} builds its own backbone; pass `backbone=` to "
                "kr.models.RecModel instead."
            )
        if backbone.task_units != self.head_units():
            raise ValueError(
                f"The backbone was built for tasks {backbone.task_units}, the model has "
                f"{self.head_units()} ({{task name: logits}}); build the backbone with "
                "task_units={task.name: task.units for task in tasks}."
            )

    def backbone_arguments(self) -> dict[str, Any]:
        """The arguments every `Backbone` of this model takes (spec, heads, front end).

        The front end made in `__init__` is handed over once, to the backbone.
        """
        return {
            "spec": self.spec,
            "task_units": self.head_units(),
            "numeric_field_dim": self.numeric_field_dim,
            "oov_dropout": self.oov_dropout,
            "embedding": self.__dict__.pop("_front_end", None),
            "name": "backbone",
        }

    # ------------------------------------------------------------- backbone
    @property
    def embedding(self):
        """The backbone's `FeatureEmbedding` front end."""
        return self.backbone.embedding

    @property
    def field_names(self) -> list[str]:
        return self.backbone.field_names

    def concat_inputs(self, embedded: dict):
        """x0 = [all field vectors, dense features], as the backbone builds it."""
        return self.backbone.concat_inputs(embedded)

    # ----------------------------------------------------------------- tasks
    @property
    def tasks(self) -> tuple[Task, ...]:
        return self._tasks

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self._tasks]

    def head_units(self) -> dict[str, int]:
        """{head name: logits} of `self.heads`: one head per task by default."""
        return {t.name: t.units for t in self._tasks}

    # ------------------------------------------------------------- computing
    def compute_logits(self, inputs: dict, training=None) -> dict:
        """{head name: logits (B, units)}: the heads on the backbone's `hidden`,
        plus the backbone's logit-level terms."""
        outputs = self.backbone(inputs, training=training)
        logits = dict(self.heads(outputs["hidden"])) if self.heads is not None else {}
        for name, term in outputs.get("logits", {}).items():
            logits[name] = logits[name] + term if name in logits else term
        return logits

    def add_scenario_logits(self, inputs, logits: dict, training=None) -> dict:
        """Adds the scenario-indicator tower's logit to every task logit."""
        if self.scenario_logit_tower is None:
            return logits
        units = {t.name: t.units for t in self._tasks}
        shallow = split_units(self.scenario_logit_tower(inputs, training=training), units)
        return {name: value + shallow[name] for name, value in logits.items()}

    def call(self, inputs, training=None):
        """{output name: logits}: what the losses read.

        `predict` and the export return `serving_outputs` of these
        (probabilities for binary tasks), as does `predict_outputs`.
        """
        logits = self.compute_logits(inputs, training=training)
        logits = self.add_scenario_logits(inputs, logits, training=training)
        logits = {name: ops.cast(value, "float32") for name, value in logits.items()}
        return logits

    def serving_outputs(self, logits: dict) -> dict:
        """{output name: served value} from `call`'s logits: each task's activation.

        Shaped like the logits, (B, 1) for binary and regression tasks, as
        the metrics and the labels are; `predict_outputs` gives the served
        shapes.
        """
        return {t.name: t.activation(logits[t.name]) for t in self._tasks}

    def predict_outputs(self, inputs) -> dict:
        """The served outputs of preprocessed `inputs`, as tensors (one call, no batching).

        The export's outputs: (B,) for binary and regression tasks,
        (B, num_classes) for multiclass ones.
        """
        outputs = self.serving_outputs(self(inputs, training=False))
        return {name: _served_shape(value) for name, value in outputs.items()}

    def predict(self, x, *args, **kwargs):
        """Keras `predict`, returning the served outputs as NumPy arrays.

        Probabilities, not logits, in the export's shapes: (B,) for binary
        and regression tasks, (B, num_classes) for multiclass ones. `x` may
        be a DataFrame (label columns are not needed; `batch_size` rows a
        batch, default 1024), a dataset of preprocessed batches or a dict
        of preprocessed arrays.
        """
        arguments = _keras_arguments(keras.Model.predict, self, (x, *args), kwargs)
        x = arguments["x"]
        if isinstance(x, pd.DataFrame):
            arguments["x"] = self._frame_dataset(x, arguments.pop("batch_size", None), labels=False)
        else:
            self._check_preprocessed(x)
        return self._served_numpy(super().predict(**arguments))

    def predict_on_batch(self, x):
        """Keras `predict_on_batch` (x: a DataFrame or preprocessed inputs), as `predict`."""
        if isinstance(x, pd.DataFrame):
            x = next(iter(self._frame_dataset(x, batch_size=len(x), labels=False)))
        else:
            self._check_preprocessed(x)
        return self._served_numpy(super().predict_on_batch(x))

    def _served_numpy(self, logits: dict) -> dict:
        outputs = self.serving_outputs({k: ops.convert_to_tensor(v) for k, v in logits.items()})
        return {k: ops.convert_to_numpy(_served_shape(v)) for k, v in outputs.items()}

    def _input_specs(self) -> dict[str, tuple[tuple, str]]:
        """{feature name: (shape after the batch axis, dtype)} of the preprocessed inputs."""
        return preprocessed_input_specs(self.spec)

    def dummy_inputs(self, batch_size: int = 2) -> dict:
        """Preprocessed-shaped inputs (all ids 1, numerics 0) for building."""
        return dummy_inputs(self.spec, batch_size)

    def symbolic_inputs(self) -> dict:
        """`keras.KerasTensor`s of the preprocessed inputs, batch size None."""
        return {
            name: keras.KerasTensor((None, *shape), dtype, name=name)
            for name, (shape, dtype) in self._input_specs().items()
        }

    def _check_preprocessed(self, x) -> None:
        """A clear error for raw values where the model needs preprocessed ones.

        The model reads ids and normalized numbers; raw values (strings,
        item lists, ids outside a vocabulary) would otherwise fail deep in
        an embedding lookup, or worse, index the wrong rows. Only in-memory
        arrays are checked; datasets and tensors pass as they are.
        """
        if x is None or _is_tf_dataset(x) or not isinstance(x, (dict, np.ndarray, list)):
            return
        if not isinstance(x, dict):
            raise TypeError(
                f"{type(self).__name__} takes its inputs as a dict of preprocessed "
                f"features keyed by feature name, not a {type(x).__name__} "
                f"(shape {np.shape(x)}). " + _USE_A_DATAFRAME
            )
        specs = self._input_specs()
        missing = [name for name in specs if name not in x]
        if missing:
            raise KeyError(
                f"The inputs have no feature(s) {missing}; they have {sorted(x)[:12]}, and "
                f"the model reads {list(specs)} (preprocessed). " + _USE_A_DATAFRAME
            )
        for name, (shape, _) in specs.items():
            problem = self._raw_value_problem(name, x[name], len(shape) + 1)
            if problem:
                raise ValueError(
                    f"Feature '{name}' {problem}: it looks like raw (unpreprocessed) "
                    "values, and the model reads preprocessed ids and numbers. " + _USE_A_DATAFRAME
                )

    def _raw_value_problem(self, name: str, value, rank: int) -> str | None:
        dtype = getattr(value, "dtype", None)
        if getattr(dtype, "name", None) == "string":  # a tf.string tensor
            return "holds strings"
        if not isinstance(value, (np.ndarray, pd.Series, list)):
            return None  # a backend tensor: preprocessed by whoever made it
        value = np.asarray(value)
        if value.dtype.kind in "OUSb":
            return f"holds {value.dtype} values"
        if value.ndim != rank:
            return f"has shape {value.shape}, expected rank {rank}"
        feature = self.spec[name]
        if feature.kind == "numeric" and not feature.is_bucketized:
            return None
        if value.dtype.kind not in "iu":
            return f"holds {value.dtype} values, expected integer ids"
        size = self.spec.input_dim(name)
        if value.size and (value.min() < 0 or value.max() >= size):
            return (
                f"holds ids outside [0, {size}) (from {value.min()} to {value.max()}), "
                "the range of its vocabulary"
            )
        return None

    def build(self, input_shape=None):
        # Dict inputs of mixed dtypes: build by tracing one call on dummy
        # inputs instead of from shapes, so every sublayer gets its weights.
        if self.built:
            return
        self.call(self.dummy_inputs(), training=False)
        self.built = True

    def build_now(self) -> RecModel:
        """Creates all weights (call at the end of a subclass __init__)."""
        self.build()
        return self

    def summary(self, *args, **kwargs) -> None:
        """Keras' summary with the real output shapes, then the served outputs.

        The layers were built on a dummy batch, so Keras alone would show
        that batch's size (2) or "?" for layers with dict outputs; one
        symbolic call on inputs of batch size None records the real shapes
        (each layer's outputs, dicts included), as a functional model has
        them. The last line gives what `predict` and the export return.
        """
        arguments = _keras_arguments(keras.Model.summary, self, args, kwargs)
        try:
            served = self._trace_symbolic_shapes()
        except Exception as error:  # e.g. a subclass computing with non-Keras ops
            served = None
            warnings.warn(
                f"{type(self).__name__}.summary: the symbolic call failed ({error}); the "
                "output shapes shown are those of the dummy build batch.",
                stacklevel=2,
            )
        super().summary(**arguments)
        if served is not None:
            (arguments.get("print_fn") or print)(served)

    def _trace_symbolic_shapes(self) -> str:
        """Calls the model once on `symbolic_inputs` (first time only); the served outputs."""
        line = getattr(self, "_served_outputs_line", None)
        if line is not None:
            return line
        self.build()
        logits = self.call(self.symbolic_inputs(), training=False)
        outputs = self.serving_outputs(logits)
        shapes = ", ".join(
            f"{name} {tuple(_served_shape(value).shape)} {value.dtype}"
            for name, value in outputs.items()
        )
        self._served_outputs_line = f"Served outputs (predict, export): {shapes}"
        return self._served_outputs_line

    # --------------------------------------------------------------- compile
    def compile(
        self,
        optimizer="adam",
        loss=None,
        loss_weights=None,
        metrics=None,
        weighted_metrics=None,
        jit_compile=None,
        **kwargs,
    ):
        """Keras `compile` with losses, loss weights and metrics from the tasks.

        Anything passed explicitly wins over the task defaults. Task metrics
        go to `weighted_metrics`, so a task with a `mask` or
        `sample_weight` column is measured on its own examples. With a
        learned `loss_weighting` the losses must be one per task (a dict by
        task name, or the defaults) and `loss_weights` is not allowed. On the
        TensorFlow backend `jit_compile` defaults to False: XLA recompiles
        for every new input shape, and on CPU it was slower for DCNv2
        though faster for DeepFM (see `benchmarks/README.md`).
        """
        self._recsys_compile_args = {
            "optimizer": optimizer,
            "loss": loss,
            "loss_weights": loss_weights,
            "metrics": metrics,
            "weighted_metrics": weighted_metrics,
            "jit_compile": jit_compile,
        }
        loss, loss_weights, metrics, weighted_metrics = compile_defaults(
            self._tasks, loss, loss_weights, metrics, weighted_metrics
        )
        if jit_compile is None:
            jit_compile = "auto" if keras.backend.backend() != "tensorflow" else False
        if self.loss_weighter is not None:
            # The model adds the task losses up itself (`compute_loss`).
            self._task_loss_fns = loss_combiner.per_task_losses(
                self.loss_weighting,
                self.task_names,
                loss,
                self._recsys_compile_args["loss_weights"],
            )
            loss, loss_weights = None, None
        super().compile(
            optimizer=optimizer,
            loss=loss,
            loss_weights=loss_weights,
            metrics=metrics,
            weighted_metrics=weighted_metrics,
            jit_compile=jit_compile,
            **kwargs,
        )
        sum_repeated_sparse_gradients(self.optimizer)

    # ------------------------------------------------------ loss weighting
    def task_losses(self, y, y_pred, sample_weight=None) -> list:
        """The unweighted loss L_k of every task (from its logits), in task order."""
        return loss_combiner.task_losses(
            self._task_loss_fns,
            self.column_labels(y),
            self.supervised_outputs(y_pred),
            sample_weight,
        )

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras' loss, or the learned combination of the task losses.

        With `loss_weighting="fixed"` this is `keras.Model.compute_loss`;
        otherwise the task losses L_k are combined by `self.loss_weighter`
        (each L_k is logged as `<task>_loss`), plus regularization losses.
        """
        y_pred = self.supervised_outputs(y_pred)
        y = self.column_labels(y)
        if self.loss_weighter is None:
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        losses = self.task_losses(y, y_pred, sample_weight)
        total = self._weighted_loss(losses, y_pred)
        if training and self.loss_weighting == "gradnorm":
            total = total + gradnorm.weight_term(self, losses)
        return total

    def supervised_outputs(self, y_pred):
        """The tasks' outputs of `y_pred`, without the unsupervised extra outputs."""
        if isinstance(y_pred, dict):
            return {t.name: y_pred[t.name] for t in self._tasks}
        return y_pred

    def fit(self, x=None, y=None, *args, **kwargs):
        """Keras `fit`, also on a pandas DataFrame, with `class_weight` for one task.

        `x` may be a DataFrame: it goes through `kr.data.from_pandas` with the
        model's spec and tasks (labels, masks and sample weights come from
        the tasks' columns, so `y` and `sample_weight` are not given),
        `batch_size` rows a batch (default 1024, from_pandas' default, not
        Keras' 32), reshuffled every epoch unless `shuffle=False`.
        `validation_data` may be a DataFrame too, and `validation_split`
        holds out the DataFrame's last rows as Keras does with arrays.

        A `tf.data.Dataset` (e.g. `kr.data.from_pandas`) is not reshuffled:
        the pipeline shuffles itself (`from_pandas(..., shuffle=True)`);
        Keras' default `shuffle=True` could not act on it and would only warn.

        `class_weight` ({class id: weight}) works on a single-task model
        (binary or multiclass): it becomes per-example loss weights of that
        task, multiplied into its `sample_weight` / `mask` weights. A
        multi-task model has no single label to read classes from: give
        each task a `sample_weight` column, or `Task(pos_weight=...)` for
        binary tasks.
        """
        arguments = _keras_arguments(keras.Model.fit, self, (x, y, *args), kwargs)
        x = arguments.get("x")
        batch_size = arguments.get("batch_size")
        validation = arguments.get("validation_data")
        if isinstance(x, pd.DataFrame):
            self._no_labels_beside_frame("fit", arguments)
            split = float(arguments.pop("validation_split", 0.0) or 0.0)
            if split:
                if validation is not None:
                    raise ValueError("Pass validation_data or validation_split, not both.")
                if not 0.0 < split < 1.0:
                    raise ValueError(f"validation_split must be in (0, 1), got {split}.")
                keep = len(x) - int(len(x) * split)
                x, validation = x.iloc[:keep], x.iloc[keep:]
            # The pipeline shuffles (every epoch); Keras cannot shuffle a dataset.
            arguments["x"] = self._frame_dataset(
                x, batch_size, shuffle=bool(arguments.get("shuffle", True))
            )
            arguments["shuffle"] = False
            arguments.pop("batch_size", None)
        else:
            self._check_preprocessed(x)
            if _is_tf_dataset(x) and "shuffle" not in arguments:
                arguments["shuffle"] = False
        if isinstance(validation, pd.DataFrame):
            arguments["validation_data"] = self._frame_dataset(
                validation, arguments.pop("validation_batch_size", None) or batch_size
            )
        class_weight = arguments.pop("class_weight", None)
        if class_weight is not None:
            arguments.update(self._class_weighted(arguments, class_weight))
        return super().fit(**arguments)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """Keras `evaluate`, also on a pandas DataFrame (its label columns are required).

        A DataFrame goes through `kr.data.from_pandas` with the model's spec
        and tasks, `batch_size` rows a batch (default 1024).
        """
        arguments = _keras_arguments(keras.Model.evaluate, self, (x, y, *args), kwargs)
        x = arguments.get("x")
        if isinstance(x, pd.DataFrame):
            self._no_labels_beside_frame("evaluate", arguments)
            arguments["x"] = self._frame_dataset(x, arguments.pop("batch_size", None))
        else:
            self._check_preprocessed(x)
        return super().evaluate(**arguments)

    def _frame_dataset(self, df: pd.DataFrame, batch_size=None, shuffle=False, labels=None):
        """`kr.data.from_pandas(df, self, ...)`; TensorFlow is imported only here."""
        from keras_recsys.data import from_pandas

        options = {} if labels is None else {"labels": labels}
        return from_pandas(
            df, self, batch_size=batch_size or DATAFRAME_BATCH_SIZE, shuffle=shuffle, **options
        )

    def _no_labels_beside_frame(self, method: str, arguments: dict) -> None:
        for name in ("y", "sample_weight"):
            if arguments.get(name) is not None:
                raise ValueError(
                    f"{method}(df) reads labels and weights from the DataFrame's columns "
                    f"(each Task's `label`, `sample_weight` and `mask`); do not pass "
                    f"`{name}` with a DataFrame."
                )

    def _class_weighted(self, arguments: dict, class_weight) -> dict:
        """Keras' `class_weight` as sample weights of the model's one task.

        Keras applies `class_weight` to single-output models only, and this
        model's outputs are a dict (one entry per task), so Keras would
        refuse it even for one task; the weights are applied here instead,
        as Keras would: weight of the example's class × its sample weight.
        """
        if len(self._tasks) != 1:
            raise ValueError(
                f"class_weight applies to a single-task model; this one has tasks "
                f"{self.task_names}, whose classes differ. Weight examples per task "
                "instead: Task(..., sample_weight='<column>') with a weight column, "
                "or Task(..., pos_weight=w) to weight the positives of a binary task."
            )
        task = self._tasks[0]
        table = task.class_weight_table(class_weight)
        x = arguments["x"]
        if _is_tf_dataset(x):
            return {"x": _class_weighted_dataset(x, task.name, table)}
        y = arguments.get("y")
        if y is None:
            raise ValueError(
                "class_weight needs labels: pass `y`, a DataFrame with the label "
                f"column '{task.label}', or a dataset of (features, labels) batches."
            )
        if not isinstance(x, dict):
            raise ValueError(
                "class_weight is applied to DataFrames, tf.data datasets and dicts of "
                f"arrays; got {type(x).__name__}. Pass sample weights instead."
            )
        labels = np.asarray(y[task.name] if isinstance(y, dict) else y).reshape(-1)
        if labels.size and (labels.min() < 0 or labels.max() >= len(table)):
            raise ValueError(
                f"Labels of task '{task.name}' must be class ids in [0, {len(table)}) "
                f"for class_weight; found {labels.min()} to {labels.max()}."
            )
        weights = table[labels.astype(np.int64)]
        given = arguments.get("sample_weight")
        if isinstance(given, dict):
            given = given.get(task.name)
        if given is not None:
            weights = weights * np.asarray(given, np.float32).reshape(-1)
        return {"sample_weight": weights}

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Keras' metrics on the served outputs of the tasks (probabilities, as `predict`)."""
        served = self.supervised_outputs(self.serving_outputs(y_pred))
        return super().compute_metrics(
            x, self.column_labels(y), served, sample_weight=sample_weight
        )

    def column_labels(self, y):
        """Labels shaped like the outputs (see `keras_recsys.tasks.column_labels`)."""
        return column_labels(self._tasks, y)

    def _weighted_loss(self, losses: list, y_pred: dict):
        batch_size = ops.shape(next(iter(y_pred.values())))[0]
        return loss_combiner.combine(self.loss_weighter, losses, batch_size, self.losses)

    def gradnorm_variables(self) -> list:
        """The last shared weights W on which GradNorm measures gradient norms:
        the backbone's (`Backbone.gradnorm_variables`)."""
        return self.backbone.gradnorm_variables()

    # GradNorm (`keras_recsys.training.gradnorm` says how each backend does it).
    def train_step(self, *args, **kwargs):
        if self.loss_weighting != "gradnorm":
            return super().train_step(*args, **kwargs)
        backend = keras.backend.backend()
        if backend == "tensorflow":
            return gradnorm.tensorflow_train_step(self, *args, **kwargs)
        result = super().train_step(*args, **kwargs)
        if backend == "jax":
            logs, state = result
            return logs, gradnorm.renormalized_jax_state(self, state)
        gradnorm.renormalize_in_place(self)
        return result

    def compute_loss_and_updates(
        self,
        trainable_variables,
        non_trainable_variables,
        metrics_variables,
        x,
        y,
        sample_weight,
        training=False,
        optimizer_variables=None,
    ):
        """JAX trainer hook: GradNorm's gradient norms before Keras' own loss."""
        if self.loss_weighting == "gradnorm" and training:
            self._gradnorm_norms = gradnorm.jax_task_gradient_norms(
                self, trainable_variables, non_trainable_variables, x, y, sample_weight
            )
        try:
            return super().compute_loss_and_updates(
                trainable_variables,
                non_trainable_variables,
                metrics_variables,
                x,
                y,
                sample_weight,
                training=training,
                optimizer_variables=optimizer_variables,
            )
        finally:
            self._gradnorm_norms = None

    # ---------------------------------------------------------------- export
    def export(self, base_dir: str, version: int | None = None, **kwargs) -> str:
        """Writes a TF Serving SavedModel to `base_dir/<version>/`.

        The `serving_default` signature takes raw feature values by name and
        returns one output per task. See `keras_recsys.export.export_model`
        for the arguments.

        Returns:
            The path of the version directory written.
        """
        from keras_recsys.export import export_model

        return export_model(self, base_dir, version=version, **kwargs)

    # --------------------------------------------------------- serialization
    def get_config(self) -> dict[str, Any]:
        """Spec, tasks, the base options and the backbone's own arguments
        (`Backbone.body_config`: a builder takes the arguments of its
        backbone under the same names); subclasses add any others."""
        config = {
            "name": self.name,
            "spec": self.spec.get_config(),
            "tasks": [t.get_config() for t in self._tasks],
        }
        if type(self) is RecModel:  # a backbone of one's own, serialized whole
            config["backbone"] = keras.saving.serialize_keras_object(self.backbone)
        else:
            config.update(self.backbone.body_config())
        if self.numeric_field_dim is not None:
            # Changes the embedding weights, so a reloaded model needs it.
            config.setdefault("numeric_field_dim", self.numeric_field_dim)
        if self.scenario_tower_config is not None:
            config["scenario_tower"] = self.scenario_tower_config
        if self.oov_dropout:
            config["oov_dropout"] = self.oov_dropout
        if self.loss_weighting != "fixed":
            config["loss_weighting"] = self.loss_weighting
        if self.loss_weighting == "gradnorm":
            config["gradnorm_alpha"] = self.gradnorm_alpha
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RecModel:
        config = dict(config)
        spec = FeatureSpec.from_config(config.pop("spec"))
        tasks = [Task.from_config(t) for t in config.pop("tasks")]
        if "backbone" in config:
            config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(spec, tasks, **config)
