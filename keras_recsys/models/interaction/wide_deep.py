"""Wide & Deep."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_recsys.layers.mlp import MLP
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class WideAndDeepBackbone(Backbone):
    """Wide & Deep's body: "hidden" = MLP(x0); "logits" = wide(x) per task.

    "hidden" is the deep part: an MLP on x0 = [all field embeddings, the
    dense numerics], which the model's task heads read. "logits" is the
    wide part: a `LinearTerm` over every id feature (raw ids and the spec's
    `Crossed` features, one weight per id) and the numeric features, with
    its own weights and bias for each task logit.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`.
        hidden_units: widths of the deep MLP.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> backbone = kr.models.WideAndDeepBackbone(spec, {"click": 1}, hidden_units=[64])
    >>> outputs = backbone(batch)
    >>> outputs["hidden"].shape, outputs["logits"]["click"].shape
    ((B, 64), (B, 1))
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
        # Wide before deep: the order the layers draw their initial weights in.
        self.wide = self.make_linear_term("wide")
        self.deep = MLP(
            self.hidden_units,
            activation,
            dropout,
            normalization,
            dtype=self.dtype_policy,
            name="deep",
        )

    def body(self, embedded, inputs, training=None):
        wide = self.split_by_task(self.wide(inputs, embedded["dense"]))
        return {
            "hidden": self.deep(self.concat_inputs(embedded), training=training),
            "logits": wide,
        }

    def gradnorm_variables(self) -> list:
        """The deep MLP's last layer, the last one the task heads share (the
        paper's choice; the wide part is per task); the embedding tables when
        `hidden_units` is empty."""
        if not self.deep.dense_layers:
            return super().gradnorm_variables()
        return list(self.deep.dense_layers[-1].trainable_variables)

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
class WideAndDeep(RecModel):
    """Wide & Deep: logit = wide(x) + head(MLP(x0)).

    The wide part is a `LinearTerm` over every id feature (raw ids and the
    spec's `Crossed` features, one weight per id) and the numeric features;
    the deep part is an MLP on the concatenated embeddings and numeric
    features. Each task has its own wide weights and head. The body is
    `WideAndDeepBackbone`.

    Reference: Cheng et al., 2016, "Wide & Deep Learning for Recommender
    Systems".

    Args:
        spec: a fitted `FeatureSpec` (declare crosses with `kr.Crossed`).
        tasks: the tasks.
        hidden_units: widths of the deep MLP.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> model = kr.models.WideAndDeep(spec, tasks=[kr.Task("click")])
    >>> model.compile(optimizer="adam")
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
        super().__init__(spec, tasks, **kwargs)
        self.backbone = WideAndDeepBackbone(
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()
