"""`RecModel`: the base class every model builder derives from."""

from __future__ import annotations

import re
from typing import Any

import keras
from keras import ops

from keras_recsys.features.spec import FeatureSpec
from keras_recsys.heads.pointwise import TaskHeads
from keras_recsys.layers.embedding import FeatureEmbedding, concat_inputs
from keras_recsys.layers.interaction.linear import LinearTerm
from keras_recsys.layers.scenario.indicator import ScenarioIndicatorTower, scenario_tower_config
from keras_recsys.tasks import Task, as_tasks, column_labels, compile_defaults
from keras_recsys.training import gradnorm, loss_combiner
from keras_recsys.training.compile_config import RememberedCompile
from keras_recsys.training.optimizers import sum_repeated_sparse_gradients


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", name).lower()


class RecModel(RememberedCompile, keras.Model):
    """A Keras model built from a fitted `FeatureSpec` and a list of `Task`s.

    Subclasses create their layers in `__init__` (after calling
    `super().__init__`) and implement `compute_logits`, returning one logit
    tensor per task. Calling the model returns those logits (float32, also
    under a mixed-precision policy): the losses read logits, never clipped
    probabilities. `predict`, `predict_outputs` and the export return the
    served outputs (`serving_outputs`: sigmoid, softmax or identity by task
    kind), and the metrics see those too. `compile` fills in losses and
    metrics from the tasks (`keras_recsys.tasks.compile_defaults`), the spec
    and the tasks serialize with the model, and `export` writes a SavedModel.

    Every model reads the same preprocessed inputs (see
    `keras_recsys.data.from_pandas`), embeds them with the shared
    `FeatureEmbedding` front end (`self.embedding`) and predicts through
    the shared `TaskHeads` (`self.heads`).

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: one `Task` (or task name), or a list of them.
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
    """

    def __init__(
        self,
        spec: FeatureSpec,
        tasks,
        numeric_field_dim=None,
        scenario_tower=False,
        loss_weighting: str = "fixed",
        gradnorm_alpha: float = 1.5,
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
        self.embedding = FeatureEmbedding.from_spec(
            spec, numeric_field_dim=numeric_field_dim, name="embedding"
        )
        self.numeric_field_dim = numeric_field_dim
        self.heads = TaskHeads(self.head_units(), name="heads")
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

    # ----------------------------------------------------------------- tasks
    @property
    def tasks(self) -> tuple[Task, ...]:
        return self._tasks

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self._tasks]

    @property
    def field_names(self) -> list[str]:
        return self.embedding.field_names

    def head_units(self) -> dict[str, int]:
        """{head name: logits} of `self.heads`: one head per task by default."""
        return {t.name: t.units for t in self._tasks}

    def make_linear_term(self, name: str = "linear") -> LinearTerm:
        """A wide / LR part with one output per task logit."""
        units = sum(t.units for t in self._tasks)
        return LinearTerm.from_spec(self.spec, units=units, name=name)

    def split_by_task(self, tensor) -> dict:
        """Splits a (B, Σ units) tensor into {task_name: (B, units)}."""
        out, start = {}, 0
        for task in self._tasks:
            out[task.name] = tensor[:, start : start + task.units]
            start += task.units
        return out

    def concat_inputs(self, embedded: dict):
        """x0 = [all field vectors, dense features] for MLP-style models."""
        return concat_inputs(embedded, self.field_names)

    # ------------------------------------------------------------- computing
    def compute_logits(self, inputs: dict, training=None) -> dict:
        """{task_name: logits (B, units)}; implemented by every model."""
        raise NotImplementedError

    def add_scenario_logits(self, inputs, logits: dict, training=None) -> dict:
        """Adds the scenario-indicator tower's logit to every task logit."""
        if self.scenario_logit_tower is None:
            return logits
        shallow = self.split_by_task(self.scenario_logit_tower(inputs, training=training))
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
        """{output name: served value} from `call`'s logits: each task's activation."""
        return {t.name: t.activation(logits[t.name]) for t in self._tasks}

    def predict_outputs(self, inputs) -> dict:
        """The served outputs of preprocessed `inputs`, as tensors (one call, no batching)."""
        return self.serving_outputs(self(inputs, training=False))

    def predict(self, x, *args, **kwargs):
        """Keras `predict`, returning the served outputs (probabilities, not logits)."""
        return self._served_numpy(super().predict(x, *args, **kwargs))

    def predict_on_batch(self, x):
        return self._served_numpy(super().predict_on_batch(x))

    def _served_numpy(self, logits: dict) -> dict:
        outputs = self.serving_outputs({k: ops.convert_to_tensor(v) for k, v in logits.items()})
        return {k: ops.convert_to_numpy(v) for k, v in outputs.items()}

    def dummy_inputs(self, batch_size: int = 2) -> dict:
        """Preprocessed-shaped inputs (all ids 1, numerics 0) for building."""
        inputs = {}
        for feature in self.spec.features:
            if feature.kind == "numeric" and not feature.is_bucketized:
                inputs[feature.name] = ops.zeros((batch_size,), "float32")
            elif feature.kind == "sequence":
                inputs[feature.name] = ops.ones((batch_size, feature.max_length), "int32")
            else:
                inputs[feature.name] = ops.ones((batch_size,), "int32")
        return inputs

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
        """Keras `fit`; a `tf.data.Dataset` (e.g. `kr.data.from_pandas`) is not reshuffled.

        The pipeline shuffles itself (`from_pandas(..., shuffle=True)`); Keras'
        default `shuffle=True` could not act on it and would only warn.
        """
        shuffle_given = "shuffle" in kwargs or len(args) >= 7  # 7th after y: shuffle
        if not shuffle_given and hasattr(x, "element_spec") and "tensorflow" in type(x).__module__:
            kwargs["shuffle"] = False
        return super().fit(x, y, *args, **kwargs)

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
        """The last shared weights W on which GradNorm measures gradient norms.

        Default: the embedding tables (the part every model shares); models
        with a shared network override this with its last shared layer.
        """
        return list(self.embedding.trainable_variables)

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
    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments of a subclass (beyond spec and tasks)."""
        return {}

    def get_config(self) -> dict[str, Any]:
        config = {
            "name": self.name,
            "spec": self.spec.get_config(),
            "tasks": [t.get_config() for t in self._tasks],
            **self.hyperparameters(),
        }
        if self.numeric_field_dim is not None:
            # Changes the embedding weights, so a reloaded model needs it.
            config.setdefault("numeric_field_dim", self.numeric_field_dim)
        if self.scenario_tower_config is not None:
            config["scenario_tower"] = self.scenario_tower_config
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
        return cls(spec, tasks, **config)
