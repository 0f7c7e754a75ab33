"""DLRM: bottom MLP on the dense features, pairwise dot interactions, top MLP."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops
from keras_rs.layers import DotInteraction

from keras_recsys.layers.mlp import MLP
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class DLRMBackbone(Backbone):
    """DLRM's body: "hidden" = top_MLP([z, dot products among z, e_1..e_F]).

    z = bottom_MLP(dense features) has the field size d (the bottom MLP's
    widths are `bottom_units` followed by d); the pairwise dot products
    ⟨u, v⟩ among z and the F field embeddings (each unordered pair once,
    keras-rs `DotInteraction`, which orders them as the lower triangle of
    the (F+1)×(F+1) Gram matrix row by row, z being row 0) are
    concatenated with z and go through the top MLP. The task heads are
    the top MLP's output layer. Without numeric features there is no
    bottom MLP and the interactions are among the fields alone.

    Args:
        spec, task_units, oov_dropout: see `Backbone`. Numeric features
            go through the bottom MLP, so `numeric_field_dim` must be None.
        bottom_units: hidden widths of the bottom MLP (a last layer of
            width d is added).
        top_units: widths of the top MLP.
        self_interaction: also take every vector's dot product with itself.
        activation: activation of both MLPs.
        dropout: dropout rate of the top MLP.
        normalization: None, "batch" or "layer" in both MLPs.

    Example:

    >>> backbone = kr.models.DLRMBackbone(
    ...     spec, {"click": 1}, bottom_units=[32], top_units=[64]
    ... )
    >>> backbone(batch)["hidden"].shape
    (B, 64)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        bottom_units: Sequence[int] = (512, 256, 64),
        top_units: Sequence[int] = (512, 256),
        self_interaction: bool = False,
        activation: str = "relu",
        dropout: float = 0.0,
        normalization: str | None = None,
        **kwargs,
    ):
        if kwargs.get("numeric_field_dim") is not None:
            raise ValueError(
                "DLRM reads numeric features through its bottom MLP; numeric_field_dim "
                "(numeric features as embedded fields) must be None."
            )
        super().__init__(spec, task_units, **kwargs)
        self.bottom_units = [int(u) for u in bottom_units]
        self.top_units = [int(u) for u in top_units]
        self.self_interaction = bool(self_interaction)
        self.activation = activation
        self.dropout = dropout
        self.normalization = normalization
        dims = set(self.embedding.field_dims().values())
        if len(dims) != 1:
            raise ValueError(
                "DLRM needs every field embedding to have the same size (the dot "
                f"products pair them), got {self.embedding.field_dims()}."
            )
        self.field_dim = dims.pop()
        # Every bottom layer has the activation, the last one too (as in the
        # reference implementation): z is a ReLU vector like a hidden layer.
        self.bottom_mlp = (
            MLP(
                self.bottom_units + [self.field_dim],
                activation,
                normalization=normalization,
                dtype=self.dtype_policy,
                name="bottom_mlp",
            )
            if self.embedding.dense
            else None
        )
        self.interaction = DotInteraction(
            self_interaction=self.self_interaction, dtype=self.dtype_policy, name="interaction"
        )
        self.top_mlp = MLP(
            self.top_units,
            activation,
            dropout,
            normalization,
            dtype=self.dtype_policy,
            name="top_mlp",
        )

    def interact(self, embedded, training=None):
        """The top MLP's input: [z, the pairwise dot products] (z is absent
        without numeric features)."""
        vectors = [embedded["fields"][name] for name in self.field_names]
        if self.bottom_mlp is None:
            return self.interaction(vectors)
        dense = self.bottom_mlp(embedded["dense"], training=training)
        products = self.interaction([dense] + vectors)
        return ops.concatenate([dense, products], axis=-1)

    def body(self, embedded, inputs, training=None):
        return {"hidden": self.top_mlp(self.interact(embedded, training), training=training)}

    def gradnorm_variables(self) -> list:
        """The top MLP's last layer, the last one the task heads share; the
        embedding tables (and bottom MLP) when `top_units` is empty."""
        if not self.top_mlp.dense_layers:
            return super().gradnorm_variables()
        return list(self.top_mlp.dense_layers[-1].trainable_variables)

    def get_config(self):
        config = super().get_config()
        config.update(
            bottom_units=self.bottom_units,
            top_units=self.top_units,
            self_interaction=self.self_interaction,
            activation=self.activation,
            dropout=self.dropout,
            normalization=self.normalization,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class DLRM(RecModel):
    """DLRM: logit = head(top_MLP([z, ⟨u, v⟩ for every pair u, v of z, e_1..e_F])).

    The numeric features go through the bottom MLP to z = bottom_MLP(dense) of the
    embedding size d; the categorical (and pooled sequence) features are
    embedded; the interaction is the dot product of every pair of vectors
    among z and the field embeddings (keras-rs `DotInteraction`), and
    the top MLP reads z concatenated with those products. Each task head
    is the top MLP's output layer. Every field embedding must have the
    size d. The body is `DLRMBackbone`.

    Defaults are the reference implementation's Criteo Kaggle setting:
    bottom MLP 512-256-64-d, top MLP 512-256-(head).

    Reference: Naumov et al., 2019, "Deep Learning Recommendation Model for
    Personalization and Recommendation Systems".

    Args:
        spec: a fitted `FeatureSpec` (one embedding size for all fields).
        tasks: the tasks.
        bottom_units: hidden widths of the bottom MLP (a last layer of
            width d is added).
        top_units: widths of the top MLP.
        self_interaction: also take every vector's dot product with itself.
        activation: activation of both MLPs.
        dropout: dropout rate of the top MLP.
        normalization: None, "batch" or "layer" in both MLPs.

    Example:

    >>> model = kr.models.DLRM(spec, tasks="click", bottom_units=[64], top_units=[128, 64])
    """

    def __init__(
        self,
        spec,
        tasks,
        bottom_units: Sequence[int] = (512, 256, 64),
        top_units: Sequence[int] = (512, 256),
        self_interaction: bool = False,
        activation: str = "relu",
        dropout: float = 0.0,
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, tasks, **kwargs)
        self.backbone = DLRMBackbone(
            bottom_units=bottom_units,
            top_units=top_units,
            self_interaction=self_interaction,
            activation=activation,
            dropout=dropout,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()
