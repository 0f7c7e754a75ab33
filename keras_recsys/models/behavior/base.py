"""`BehaviorBackbone`: the shared frame of the behaviour-sequence models (DIN, DIEN).

Each behaviour sequence named in `behaviors` is read against its target
feature and summed up as one interest vector, which takes the place of the
sequence's pooled field; every field then goes into one MLP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

from keras_recsys.features.spec import FeatureSpec
from keras_recsys.layers.embedding import FeatureEmbedding, concat_inputs
from keras_recsys.layers.mlp import MLP
from keras_recsys.models.backbone import Backbone


def behavior_targets(
    spec: FeatureSpec,
    embedding: FeatureEmbedding,
    behaviors: Mapping[str, str] | None,
    model: str = "The model",
) -> dict[str, str]:
    """{behaviour sequence: target feature}, checked against the spec's embeddings.

    With `behaviors=None`, every sequence that shares the vocabulary of
    another feature embedded as a field (`Sequence(...,
    shares_vocabulary_with="item_id")`) is compared with that feature: the
    histories of items with the target item, of genres with the target's
    genres.

    Raises:
        ValueError: a key is not a `Sequence` of the spec, a target is not a
            field of the model, the two embed to different sizes, or there
            is no pair at all.
    """
    sequences = [name for name, _, _ in embedding.sequence_fields]
    fields = embedding.field_names
    dims = embedding.field_dims()
    if behaviors is None:
        behaviors = {}
        for name in sequences:
            owner = spec.vocabulary_owner(name).name
            if owner != name and owner in fields:
                behaviors[name] = owner
        if not behaviors:
            raise ValueError(
                f"{model} found no behaviour sequence sharing the vocabulary of a target "
                f"feature (Sequence(..., shares_vocabulary_with=...)); the spec's sequences "
                f"are {sequences}. Pass behaviors={{sequence: target feature}}."
            )
        return behaviors
    if isinstance(behaviors, str) or not isinstance(behaviors, Mapping):
        raise TypeError(
            f"{model}: behaviors must map each behaviour sequence to its target feature, "
            f"e.g. {{'hist_items': 'item_id'}}; got {behaviors!r}."
        )
    if not behaviors:
        raise ValueError(f"{model}: behaviors is empty; name at least one sequence → target.")
    resolved = {}
    for sequence, target in behaviors.items():
        sequence, target = str(sequence), str(target)
        if sequence not in sequences:
            raise ValueError(
                f"{model}: behaviour '{sequence}' is not a Sequence feature of the spec; "
                f"its sequences are {sequences}."
            )
        if target not in fields or target == sequence:
            raise ValueError(
                f"{model}: the target '{target}' of behaviour '{sequence}' is not another "
                f"feature the model embeds as a field; those are {fields}."
            )
        if dims[sequence] != dims[target]:
            raise ValueError(
                f"{model} compares behaviour sequence '{sequence}' (embedding size "
                f"{dims[sequence]}) with target '{target}' (embedding size {dims[target]}): "
                "both must embed to the same size. Give them the same embedding_dim, or let "
                f"the sequence share the target's table (Sequence('{sequence}', "
                f"shares_vocabulary_with='{target}'))."
            )
        resolved[sequence] = target
    return resolved


@keras.saving.register_keras_serializable(package="keras_recsys")
class BehaviorBackbone(Backbone):
    """ "hidden" = MLP(x0), x0 = the fields with each behaviour sequence's pooled
    vector replaced by its interest vector given the target.

    Subclasses implement `interests(embedded, inputs, training)` →
    {sequence: (B, d)}; sequences not in `behaviors` keep the spec's pooling.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`.
        behaviors: {behaviour sequence: target feature} (see
            `behavior_targets`; None infers it from shared vocabularies).
        hidden_units: widths of the MLP.
        dropout: dropout rate of the MLP.
        activation: MLP activation (a Keras activation name).
        normalization: None, "batch" or "layer" in the MLP.
    """

    model_name = "The behaviour model"

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        behaviors: Mapping[str, str] | None = None,
        hidden_units: Sequence[int] = (200, 80),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
        self.behaviors = behavior_targets(self.spec, self.embedding, behaviors, self.model_name)
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

    def interests(self, embedded: dict, inputs: dict, training=None) -> dict:
        """{behaviour sequence: (B, d) interest vector given its target}."""
        raise NotImplementedError

    def body(self, embedded, inputs, training=None):
        fields = dict(embedded["fields"])
        fields.update(self.interests(embedded, inputs, training=training))
        x0 = concat_inputs({**embedded, "fields": fields}, self.field_names)
        return {"hidden": self.mlp(x0, training=training)}

    def gradnorm_variables(self) -> list:
        """The MLP's last layer, the last one the task heads share; the
        embedding tables when `hidden_units` is empty."""
        if not self.mlp.dense_layers:
            return super().gradnorm_variables()
        return list(self.mlp.dense_layers[-1].trainable_variables)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            behaviors=dict(self.behaviors),
            hidden_units=self.hidden_units,
            dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
        )
        return config
