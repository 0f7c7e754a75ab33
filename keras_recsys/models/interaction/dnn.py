"""DNN: one MLP on every embedding, the plain baseline of the zoo."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_recsys.layers.mlp import MLP
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class DNNBackbone(Backbone):
    """The DNN's body: "hidden" = MLP(x0), x0 = [all field embeddings, numerics].

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`.
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
        self.mlp = MLP(
            self.hidden_units,
            activation,
            dropout,
            normalization,
            dtype=self.dtype_policy,
            name="mlp",
        )

    def body(self, embedded, inputs, training=None):
        return {"hidden": self.mlp(self.concat_inputs(embedded), training=training)}

    def gradnorm_variables(self) -> list:
        """The MLP's last layer, the last one the task heads share (the paper's
        choice); the embedding tables when `hidden_units` is empty."""
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
class DNN(RecModel):
    """DNN: logit_t = head_t(MLP(x0)), x0 = [all field embeddings, numerics].

    The embedding-and-MLP baseline (Covington et al., 2016, "Deep Neural
    Networks for YouTube Recommendations"): one MLP shared by all tasks, one
    linear head per task. With a `role="scenario"` feature in the spec it is
    the "one shared model" baseline of the multi-scenario models (the
    scenario is then one more embedded field); `scenario_tower=True` adds
    the scenario-indicator shallow tower.

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: the tasks.
        hidden_units: widths of the MLP.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> model = kr.models.DNN(spec, tasks="click", hidden_units=[256, 128])
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
        self.backbone = DNNBackbone(
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()
