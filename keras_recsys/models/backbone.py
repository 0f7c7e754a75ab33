"""`Backbone`: a pointwise model's features → representations, with no loss."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_recsys.features.spec import FeatureSpec
from keras_recsys.layers.embedding import FeatureEmbedding, concat_inputs
from keras_recsys.layers.interaction.linear import LinearTerm


@keras.saving.register_keras_serializable(package="keras_recsys")
class Backbone(keras.layers.Layer):
    """Preprocessed features → the shared embedding front end → a body → named outputs.

    The pointwise half of the backbone-and-heads split (keras-hub's
    `Backbone` / `Task`): a backbone holds no loss and no output activation;
    a `RecModel` puts task heads, a loss combiner and the export around it.
    Calling it returns a dict:

    * `"hidden"`: what the task heads read: one (B, d) tensor shared by
      every task, or {task name: (B, d_k)} when each task has its own tower;
    * `"logits"` (optional): {task name: (B, units)} logit-level terms the
      model adds to its heads' logits. They are the parts of a paper's output
      that are not a hidden vector: the wide / LR part of Wide&Deep and
      DeepFM, DeepFM's FM term, and the output layer itself in models whose
      last layer is conditioned on the scenario (STAR, the split-and-merge
      family), which then have no separate linear heads.

    Subclasses build their layers after `super().__init__` and implement
    `body(embedded, inputs, training)`; `embedded` is `FeatureEmbedding`'s
    output and `inputs` the preprocessed features (for layers that read
    ids directly, such as a linear term or a scenario router).

    Args:
        spec: a fitted `FeatureSpec`.
        task_units: {task name: number of logits} of the tasks the model
            predicts (multi-task bodies build a tower or a gate per task,
            linear terms one output per logit).
        numeric_field_dim: embed numeric features as fields of this size;
            None keeps them as one dense vector (see `FeatureEmbedding`).
        oov_dropout: training-time rate at which ids become the OOV id
            (see `FeatureEmbedding`).
        embedding: a `FeatureEmbedding` made beforehand from the same spec and
            options, to use instead of making one (`RecModel` makes its
            builders' front end first; see `RecModel.backbone_arguments`).

    Example:

    >>> backbone = kr.models.DNNBackbone(spec, {"click": 1}, hidden_units=[64])
    >>> backbone(batch)["hidden"].shape
    (B, 64)
    """

    def __init__(
        self,
        spec: FeatureSpec,
        task_units: dict[str, int],
        numeric_field_dim: int | None = None,
        oov_dropout: float = 0.0,
        embedding: FeatureEmbedding | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(spec, dict):
            spec = FeatureSpec.from_config(spec)
        spec.check_adapted()
        self.spec = spec
        self.task_units = {str(k): int(v) for k, v in task_units.items()}
        self.numeric_field_dim = numeric_field_dim
        self.oov_dropout = float(oov_dropout)
        if embedding is None:
            embedding = FeatureEmbedding.from_spec(
                spec,
                numeric_field_dim=numeric_field_dim,
                oov_dropout=oov_dropout,
                dtype=self.dtype_policy,
                name="embedding",
            )
        elif not isinstance(embedding, FeatureEmbedding):
            raise TypeError(
                f"embedding must be a FeatureEmbedding, got {type(embedding).__name__}."
            )
        self.embedding = embedding

    # ----------------------------------------------------------- properties
    @property
    def task_names(self) -> list[str]:
        return list(self.task_units)

    @property
    def field_names(self) -> list[str]:
        return self.embedding.field_names

    def input_width(self) -> int:
        """The width of x0 = [every field embedding, the dense numerics]."""
        return sum(self.embedding.field_dims().values()) + len(self.embedding.dense)

    # --------------------------------------------------------------- pieces
    def concat_inputs(self, embedded: dict):
        """x0 = [all field vectors, dense features] for MLP-style bodies."""
        return concat_inputs(embedded, self.field_names)

    def make_linear_term(self, name: str = "linear") -> LinearTerm:
        """A wide / LR part with one output per task logit."""
        return LinearTerm.from_spec(
            self.spec, units=sum(self.task_units.values()), dtype=self.dtype_policy, name=name
        )

    def split_by_task(self, tensor) -> dict:
        """Splits a (B, Σ units) tensor into {task name: (B, units)}."""
        return split_units(tensor, self.task_units)

    # ------------------------------------------------------------ computing
    def build(self, input_shape=None):
        # Dict inputs of mixed dtypes: build by tracing one call on dummy
        # inputs (as `RecModel` does), so every sublayer gets its weights,
        # also when a saved backbone is rebuilt from its config.
        if self.built:
            return
        self.call(dummy_inputs(self.spec), training=False)
        self.built = True

    def call(self, inputs: dict, training=None) -> dict:
        embedded = self.embedding(inputs, training=training)
        return self.body(embedded, inputs, training=training)

    def body(self, embedded: dict, inputs: dict, training=None) -> dict:
        """{"hidden": ..., optionally "logits": {...}}; implemented by every backbone."""
        raise NotImplementedError

    def gradnorm_variables(self) -> list:
        """GradNorm's W: the last weights every task shares.

        Default: the embedding tables; a backbone with a shared network
        returns that network's last layer (the GradNorm paper's choice).
        """
        return list(self.embedding.trainable_variables)

    # -------------------------------------------------------- serialization
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            spec=self.spec.get_config(),
            task_units=self.task_units,
            numeric_field_dim=self.numeric_field_dim,
            oov_dropout=self.oov_dropout,
        )
        return config

    def body_config(self) -> dict[str, Any]:
        """The subclass's own arguments: `get_config` less `Backbone`'s.

        A model built on this backbone takes the same arguments, so its
        `get_config` includes these (see `RecModel.get_config`).
        """
        base = Backbone.get_config(self)
        return {k: v for k, v in self.get_config().items() if k not in base}


def split_units(tensor, units: dict[str, int]) -> dict:
    """Splits a (B, Σ units) tensor into {name: (B, units[name])}, in `units`' order."""
    out, start = {}, 0
    for name, width in units.items():
        out[name] = tensor[:, start : start + width]
        start += width
    return out


def preprocessed_input_specs(spec: FeatureSpec) -> dict[str, tuple[tuple, str]]:
    """{feature name: (shape after the batch axis, dtype)} of a spec's preprocessed inputs."""
    specs = {}
    for feature in spec.features:
        if feature.kind == "numeric" and not feature.is_bucketized:
            specs[feature.name] = ((), "float32")
        elif feature.kind == "sequence":
            specs[feature.name] = ((feature.max_length,), "int32")
        else:
            specs[feature.name] = ((), "int32")
    return specs


def dummy_inputs(spec: FeatureSpec, batch_size: int = 2) -> dict:
    """Preprocessed-shaped inputs (all ids 1, numerics 0), for building."""
    return {
        name: (ops.zeros if dtype == "float32" else ops.ones)((batch_size, *shape), dtype)
        for name, (shape, dtype) in preprocessed_input_specs(spec).items()
    }
