"""`RecModel`: the base class every model builder derives from."""

from __future__ import annotations

import re
from typing import Any

import keras
from keras import ops

from keras_recsys.features.spec import FeatureSpec
from keras_recsys.layers.embedding import FeatureEmbedding, concat_inputs
from keras_recsys.layers.heads import TaskHeads
from keras_recsys.layers.linear import LinearTerm
from keras_recsys.tasks import Task, as_tasks


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", name).lower()


class RecModel(keras.Model):
    """A Keras model built from a fitted `FeatureSpec` and a list of `Task`s.

    Subclasses create their layers in `__init__` (after calling
    `super().__init__`) and implement `compute_logits`, returning one logit
    tensor per task; this class turns logits into named outputs (sigmoid,
    softmax or identity by task kind), fills in losses and metrics in
    `compile`, serializes the spec and the tasks with the model, and exports
    a SavedModel (`export`).

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
    """

    def __init__(self, spec: FeatureSpec, tasks, numeric_field_dim=None, **kwargs):
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
        self.heads = TaskHeads({t.name: t.units for t in self._tasks}, name="heads")

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

    def extra_outputs(self, inputs, outputs: dict, training=None) -> dict:
        """Unsupervised outputs beside the tasks' (none by default)."""
        return {}

    def call(self, inputs, training=None):
        logits = self.compute_logits(inputs, training=training)
        outputs = {t.name: t.activation(logits[t.name]) for t in self._tasks}
        outputs.update(self.extra_outputs(inputs, outputs, training=training))
        return outputs

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

    def build_now(self) -> "RecModel":
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
        `sample_weight` column is measured on its own examples. On the
        TensorFlow backend `jit_compile` defaults to False: on CPU the
        non-XLA path is faster for embedding-heavy models (see
        `benchmarks/`).
        """
        self._recsys_compile_args = {
            "optimizer": optimizer,
            "loss": loss,
            "loss_weights": loss_weights,
            "metrics": metrics,
            "weighted_metrics": weighted_metrics,
            "jit_compile": jit_compile,
        }
        supervised = list(self._tasks)
        if loss is None:
            loss = {t.name: t.make_loss() for t in supervised}
        if loss_weights is None and isinstance(loss, dict):
            loss_weights = {t.name: t.weight for t in supervised if t.name in loss}
        if metrics is None and weighted_metrics is None:
            weighted_metrics = {t.name: t.make_metrics() for t in supervised}
        if jit_compile is None:
            jit_compile = "auto" if keras.backend.backend() != "tensorflow" else False
        super().compile(
            optimizer=optimizer,
            loss=loss,
            loss_weights=loss_weights,
            metrics=metrics,
            weighted_metrics=weighted_metrics,
            jit_compile=jit_compile,
            **kwargs,
        )

    def get_compile_config(self):
        args = getattr(self, "_recsys_compile_args", None)
        if args is None:
            return None
        args = dict(args, optimizer=self.optimizer)
        return {k: keras.saving.serialize_keras_object(v) for k, v in args.items()}

    def compile_from_config(self, config):
        config = {k: keras.saving.deserialize_keras_object(v) for k, v in config.items()}
        self.compile(**config)
        if self.built and self.optimizer is not None:
            self.optimizer.build(self.trainable_variables)

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
        return {
            "name": self.name,
            "spec": self.spec.get_config(),
            "tasks": [t.get_config() for t in self._tasks],
            **self.hyperparameters(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "RecModel":
        config = dict(config)
        spec = FeatureSpec.from_config(config.pop("spec"))
        tasks = [Task.from_config(t) for t in config.pop("tasks")]
        return cls(spec, tasks, **config)
