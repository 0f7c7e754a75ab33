"""DeepFM."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_recsys.layers.embedding import flatten_fields, stack_fields
from keras_recsys.layers.interaction.fm import FactorizationMachine
from keras_recsys.layers.mlp import MLP
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class DeepFMBackbone(Backbone):
    """DeepFM's body: "hidden" = MLP(x0); "logits" = LR(x) per task + FM(e_1..e_F).

    The FM and the MLP read the same field embeddings; the FM term is one
    number per example, added to every task's logit.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`
            (DeepFM needs `numeric_field_dim`, the size of every field).
        hidden_units: widths of the MLP.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        hidden_units: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
        self.hidden_units = [int(u) for u in hidden_units]
        self.dropout = dropout
        self.activation = activation
        self.normalization = normalization
        self.linear = self.make_linear_term("linear")
        self.fm = FactorizationMachine(dtype=self.dtype_policy, name="fm")
        self.mlp = MLP(
            self.hidden_units,
            activation,
            dropout,
            normalization,
            dtype=self.dtype_policy,
            name="mlp",
        )

    def body(self, embedded, inputs, training=None):
        fields = stack_fields(embedded["fields"], self.field_names)
        fm = self.fm(fields)
        linear = self.split_by_task(self.linear(inputs, embedded["dense"]))
        x0 = flatten_fields(fields, embedded["dense"])  # = self.concat_inputs(embedded)
        return {
            "hidden": self.mlp(x0, training=training),
            "logits": {name: linear[name] + fm for name in self.task_names},
        }

    def gradnorm_variables(self) -> list:
        """The MLP's last layer, the last one the task heads share (the paper's
        choice; the FM term has no weights of its own and the LR part is per
        task); the embedding tables when `hidden_units` is empty."""
        if not self.mlp.dense_layers:
            return super().gradnorm_variables()
        return list(self.mlp.dense_layers[-1].trainable_variables)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_units=self.hidden_units,
            dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class DeepFM(RecModel):
    """DeepFM: logit = LR(x) + FM(e_1..e_F) + head(MLP(x0)).

    The FM and the MLP share the same field embeddings. Numeric features
    enter the FM as fields e_i = x_i · v_i (as in the paper), so every field
    embedding must have the same size; sequences enter pooled. The LR part
    and the head are per task, the FM term is shared by all tasks. The body
    is `DeepFMBackbone`.

    Reference: Guo et al., 2017, "DeepFM: A Factorization-Machine based
    Neural Network for CTR Prediction".

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: the tasks.
        hidden_units: widths of the MLP.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> model = kr.models.DeepFM(spec, tasks=[kr.Task("click")])
    """

    def __init__(
        self,
        spec,
        tasks,
        hidden_units: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        kwargs.setdefault("numeric_field_dim", spec_dim(spec))
        super().__init__(spec, tasks, **kwargs)
        self.backbone = DeepFMBackbone(
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()


def spec_dim(spec) -> int:
    """The spec's default embedding size (FM's numeric fields use it)."""
    if isinstance(spec, dict):
        return int(spec.get("default_embedding_dim", 16))
    return spec.default_embedding_dim
