"""DIN: the target item weighs the user's behaviours."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras

from keras_recsys.layers.behavior.target_attention import TargetAttention
from keras_recsys.models.base import RecModel
from keras_recsys.models.behavior.base import BehaviorBackbone


@keras.saving.register_keras_serializable(package="keras_recsys")
class DINBackbone(BehaviorBackbone):
    """DIN's body: v_s = Σ_t w_t · e_t, w_t = a(e_t, e_target), in place of sequence s's pooled field.

    One `TargetAttention` (activation unit, no softmax) per behaviour
    sequence; "hidden" = MLP(x0) over the other fields and the v_s.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`.
        behaviors, hidden_units, dropout, activation, normalization: see
            `BehaviorBackbone`.
        attention_units: hidden widths of each activation unit.
        attention_activation: "prelu", "dice" or a Keras activation name.
    """

    model_name = "DIN"

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        behaviors: Mapping[str, str] | None = None,
        attention_units: Sequence[int] = (36,),
        attention_activation: str = "prelu",
        **kwargs,
    ):
        super().__init__(spec, task_units, behaviors=behaviors, **kwargs)
        self.attention_units = [int(u) for u in attention_units]
        self.attention_activation = attention_activation
        self.attentions = {
            sequence: TargetAttention(
                self.attention_units,
                attention_activation,
                dtype=self.dtype_policy,
                name=f"attention_{sequence}",
            )
            for sequence in self.behaviors
        }

    def interests(self, embedded, inputs, training=None):
        return {
            sequence: self.attentions[sequence](
                embedded["sequences"][sequence],
                embedded["fields"][target],
                mask=embedded["masks"][sequence],
                training=training,
            )
            for sequence, target in self.behaviors.items()
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            attention_units=self.attention_units,
            attention_activation=self.attention_activation,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class DIN(RecModel):
    """DIN: logit = head(MLP([e_1, …, v_s, …])), v_s = Σ_t a(e_t, e_target) · e_t.

    Deep Interest Network. For each behaviour sequence s (the user's items,
    liked items, genres, ...) and its target feature (the candidate item,
    its genres), the local activation unit scores every real step:
    a(e_t, q) = MLP([e_t, q, e_t − q, e_t ⊙ q]) (one PReLU layer of 36 and
    a linear output, the paper's figure 2), and the interest vector is the
    weighted sum v_s = Σ_t a(e_t, q) · e_t over the real steps, without a
    softmax (the paper keeps the scores unnormalized so that v's norm
    carries how strongly the user is interested). v_s takes the place of
    the sequence's pooled vector; the other fields (user profile, target,
    context, sequences not in `behaviors`, which keep the spec's pooling)
    and v_s go into one MLP (200-80 in the paper), one linear head per
    task. The sequence and its target must embed to the same size; with
    `Sequence(..., shares_vocabulary_with="item_id")` they share one table.

    Activations (document of the defaults): the activation unit uses PReLU
    ("dice", the paper's data-adaptive activation `Dice`, is the other
    choice); the MLP takes a Keras activation name (default ReLU, where the
    paper uses PReLU or Dice). The paper's mini-batch aware regularization
    is not included (use the spec's or the optimizer's regularization).
    The body is `DINBackbone`.

    Reference: Zhou et al., 2018, "Deep Interest Network for Click-Through
    Rate Prediction" (KDD).

    Args:
        spec: a fitted `FeatureSpec` with at least one behaviour `Sequence`.
        tasks: the tasks.
        behaviors: {behaviour sequence: target feature it is compared with},
            e.g. {"hist_liked": "item_id", "liked_genres": "genres"}; None
            pairs every sequence with the feature whose vocabulary it shares.
        attention_units: hidden widths of the activation unit.
        attention_activation: "prelu", "dice" or a Keras activation name.
        hidden_units: widths of the MLP.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> spec = kr.datasets.movielens_behavior_feature_spec(max_length=20).adapt(train)
    >>> model = kr.models.DIN(spec, ["like", "love"],
    ...                       behaviors={"hist_liked": "item_id", "hist_items": "item_id"})
    >>> model.compile(optimizer="adam")
    >>> model.fit(train, epochs=2)
    """

    def __init__(
        self,
        spec,
        tasks,
        behaviors: Mapping[str, str] | None = None,
        attention_units: Sequence[int] = (36,),
        attention_activation: str = "prelu",
        hidden_units: Sequence[int] = (200, 80),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, tasks, **kwargs)
        self.backbone = DINBackbone(
            behaviors=behaviors,
            attention_units=attention_units,
            attention_activation=attention_activation,
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()
