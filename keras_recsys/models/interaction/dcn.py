"""Deep & Cross Network: DCN (v1), DCNv2 (full and low-rank) and DCN-Mix."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops
from keras_rs.layers import FeatureCross

from keras_recsys.layers.interaction.cross import MixtureOfLowRankCross, VectorCross
from keras_recsys.layers.mlp import MLP
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel

_VERSIONS = ("v1", "v2", "mix")
_STRUCTURES = ("stacked", "parallel")


@keras.saving.register_keras_serializable(package="keras_recsys")
class DCNBackbone(Backbone):
    """DCN's body: "hidden" = the cross network on x0, with or beside an MLP.

    x0 = [all field embeddings, the dense numerics] goes through
    `num_cross_layers` cross layers (each reads x0 and the previous layer's
    output). "hidden" is then MLP(cross output) when `structure="stacked"`,
    [cross output, MLP(x0)] when `structure="parallel"`, and the cross output
    alone with `hidden_units=()`. DCN has no logit-level terms.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`.
        version: "v1" (`VectorCross`), "v2" (keras-rs `FeatureCross`) or
            "mix" (`MixtureOfLowRankCross`).
        num_cross_layers: number of cross layers.
        projection_dim: low-rank size for "v2" (None: full rank) and the
            expert rank for "mix" (None: 32).
        num_experts: experts per layer for "mix".
        structure: "stacked" or "parallel".
        hidden_units: widths of the MLP.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> backbone = kr.models.DCNBackbone(spec, {"click": 1}, hidden_units=[64])
    >>> backbone(batch)["hidden"].shape
    (B, 64)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        version: str = "v2",
        num_cross_layers: int = 3,
        projection_dim: int | None = None,
        num_experts: int = 4,
        structure: str = "stacked",
        hidden_units: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        if version not in _VERSIONS:
            raise ValueError(f"DCN version must be one of {_VERSIONS}, got {version!r}.")
        if structure not in _STRUCTURES:
            raise ValueError(f"DCN structure must be one of {_STRUCTURES}, got {structure!r}.")
        super().__init__(spec, task_units, **kwargs)
        self.version = version
        self.num_cross_layers = int(num_cross_layers)
        self.projection_dim = projection_dim
        self.num_experts = int(num_experts)
        self.structure = structure
        self.hidden_units = [int(u) for u in hidden_units]
        self.dropout = dropout
        self.activation = activation
        self.normalization = normalization
        # Cross layers before the MLP: the order the layers draw their initial weights in.
        self.cross_layers = [self._cross_layer(i) for i in range(self.num_cross_layers)]
        self.mlp = (
            MLP(
                self.hidden_units,
                activation,
                dropout,
                normalization,
                dtype=self.dtype_policy,
                name="mlp",
            )
            if self.hidden_units
            else None
        )

    def _cross_layer(self, index: int) -> keras.layers.Layer:
        name = f"cross_{index}"
        if self.version == "v1":
            return VectorCross(dtype=self.dtype_policy, name=name)
        if self.version == "v2":
            return FeatureCross(
                projection_dim=self.projection_dim, dtype=self.dtype_policy, name=name
            )
        return MixtureOfLowRankCross(
            projection_dim=self.projection_dim or 32,
            num_experts=self.num_experts,
            dtype=self.dtype_policy,
            name=name,
        )

    def body(self, embedded, inputs, training=None):
        x0 = self.concat_inputs(embedded)
        crossed = x0
        for layer in self.cross_layers:
            crossed = layer(x0, crossed)
        if self.mlp is None:
            hidden = crossed
        elif self.structure == "stacked":
            hidden = self.mlp(crossed, training=training)
        else:
            hidden = ops.concatenate([crossed, self.mlp(x0, training=training)], axis=-1)
        return {"hidden": hidden}

    def gradnorm_variables(self) -> list:
        """The last layer(s) whose output the task heads share (the paper's
        choice): the MLP's last layer when stacked, the last cross layer and
        the MLP's last layer when parallel (both feed the heads), the last
        cross layer without an MLP; the embedding tables when there is neither."""
        last = []
        if self.cross_layers and (self.mlp is None or self.structure == "parallel"):
            last.append(self.cross_layers[-1])
        if self.mlp is not None:
            last.append(self.mlp.dense_layers[-1])
        if not last:
            return super().gradnorm_variables()
        return [v for layer in last for v in layer.trainable_variables]

    def get_config(self):
        config = super().get_config()
        config.update(
            version=self.version,
            num_cross_layers=self.num_cross_layers,
            projection_dim=self.projection_dim,
            num_experts=self.num_experts,
            structure=self.structure,
            hidden_units=self.hidden_units,
            dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class DCN(RecModel):
    """Deep & Cross Network.

    Cross layers on x0 (all field embeddings and numeric features):

    * `version="v1"`: x_{l+1} = x0 · (x_lᵀ w_l) + b_l + x_l (`VectorCross`);
    * `version="v2"`: x_{l+1} = x0 ⊙ (W_l x_l + b_l) + x_l with a full W_l,
      or W_l = U_l V_lᵀ when `projection_dim` is set (keras-rs
      `FeatureCross`);
    * `version="mix"`: a gated mixture of low-rank experts
      (`MixtureOfLowRankCross`).

    `structure="stacked"` feeds the cross output to the MLP;
    `structure="parallel"` runs the MLP beside the cross network and
    concatenates both outputs. With `hidden_units=()` the model is the cross
    network alone. The body is `DCNBackbone`.

    References: Wang et al., 2017, "Deep & Cross Network for Ad Click
    Predictions"; Wang et al., 2021, "DCN V2: Improved Deep & Cross
    Network and Practical Lessons for Web-scale Learning to Rank Systems".

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: the tasks.
        version: "v1", "v2" or "mix".
        num_cross_layers: number of cross layers.
        projection_dim: low-rank size for "v2" (None: full rank) and the
            expert rank for "mix".
        num_experts: experts per layer for "mix".
        structure: "stacked" or "parallel".
        hidden_units: widths of the MLP.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> model = kr.models.DCN(spec, tasks="click", version="v2", projection_dim=64)
    """

    def __init__(
        self,
        spec,
        tasks,
        version: str = "v2",
        num_cross_layers: int = 3,
        projection_dim: int | None = None,
        num_experts: int = 4,
        structure: str = "stacked",
        hidden_units: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, tasks, **kwargs)
        self.backbone = DCNBackbone(
            version=version,
            num_cross_layers=num_cross_layers,
            projection_dim=projection_dim,
            num_experts=num_experts,
            structure=structure,
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()
