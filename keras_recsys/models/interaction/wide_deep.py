"""Wide & Deep."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_recsys.layers.mlp import MLP
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class WideAndDeep(RecModel):
    """Wide & Deep: logit = wide(x) + head(MLP(x0)).

    The wide part is a `LinearTerm` over every id feature (raw ids and the
    spec's `Crossed` features, one weight per id) and the numeric features;
    the deep part is an MLP on the concatenated embeddings and numeric
    features. Each task has its own wide weights and head.

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
        self.hidden_units = list(hidden_units)
        self.dropout = dropout
        self.activation = activation
        self.normalization = normalization
        self.wide = self.make_linear_term("wide")
        self.deep = MLP(hidden_units, activation, dropout, normalization, name="deep")
        self.build_now()

    def compute_logits(self, inputs, training=None):
        embedded = self.embedding(inputs, training=training)
        wide = self.split_by_task(self.wide(inputs, embedded["dense"]))
        deep = self.heads(self.deep(self.concat_inputs(embedded), training=training))
        return {name: wide[name] + deep[name] for name in self.task_names}

    def gradnorm_variables(self) -> list:
        """GradNorm's W: the deep MLP's last layer, the last one the task heads
        share (the paper's choice; the wide part is per task); the embedding
        tables when `hidden_units` is empty."""
        if not self.deep.dense_layers:
            return super().gradnorm_variables()
        return list(self.deep.dense_layers[-1].trainable_variables)

    def hyperparameters(self):
        return {
            "hidden_units": self.hidden_units,
            "dropout": self.dropout,
            "activation": self.activation,
            "normalization": self.normalization,
        }
