"""GDCN: Gated Deep Cross Network (gated cross layers with a DNN)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.interaction.gated_cross import GatedCross
from keras_recsys.layers.mlp import MLP
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel

_STRUCTURES = ("stacked", "parallel")


@keras.saving.register_keras_serializable(package="keras_recsys")
class GDCNBackbone(Backbone):
    """GDCN's body: "hidden" = the gated cross network on x0, with or beside a DNN.

    x0 = [all field embeddings, the dense numerics] goes through
    `num_cross_layers` `GatedCross` layers (each reads x0 and the previous
    layer's output). "hidden" is then DNN(cross output) when
    `structure="stacked"` (GDCN-S), [cross output, DNN(x0)] when
    `structure="parallel"` (GDCN-P), and the cross output alone with
    `hidden_units=()`. No logit-level terms.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`.
        num_cross_layers: gated cross layers.
        structure: "stacked" or "parallel".
        hidden_units: widths of the DNN.
        dropout: dropout rate of the DNN.
        activation: DNN activation.
        normalization: None, "batch" or "layer" in the DNN.

    Example:

    >>> backbone = GDCNBackbone(spec, {"click": 1}, hidden_units=[64])
    >>> backbone(batch)["hidden"].shape
    (B, 64)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        num_cross_layers: int = 3,
        structure: str = "stacked",
        hidden_units: Sequence[int] = (400, 400, 400),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        if structure not in _STRUCTURES:
            raise ValueError(f"GDCN structure must be one of {_STRUCTURES}, got {structure!r}.")
        if int(num_cross_layers) < 1:
            raise ValueError(f"GDCN needs num_cross_layers >= 1, got {num_cross_layers}.")
        super().__init__(spec, task_units, **kwargs)
        self.num_cross_layers = int(num_cross_layers)
        self.structure = structure
        self.hidden_units = [int(u) for u in hidden_units]
        self.dropout = dropout
        self.activation = activation
        self.normalization = normalization
        self.cross_layers = [
            GatedCross(dtype=self.dtype_policy, name=f"gated_cross_{i}")
            for i in range(self.num_cross_layers)
        ]
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
        """The last layer(s) whose output the heads read: the DNN's last layer
        when stacked, the last cross layer and the DNN's last layer when
        parallel, the last cross layer without a DNN."""
        last = []
        if self.mlp is None or self.structure == "parallel":
            last.append(self.cross_layers[-1])
        if self.mlp is not None:
            last.append(self.mlp.dense_layers[-1])
        return [v for layer in last for v in layer.trainable_variables]

    def get_config(self):
        config = super().get_config()
        config.update(
            num_cross_layers=self.num_cross_layers,
            structure=self.structure,
            hidden_units=self.hidden_units,
            dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class GDCN(RecModel):
    """GDCN: gated cross layers x_{l+1} = x0 ⊙ (W_c x_l + b) ⊙ σ(W_g x_l) + x_l, and a DNN.

    x0 holds all field embeddings and the numeric features. Each gated
    cross layer (`GatedCross`) adds one order of explicit interactions and
    filters them unit by unit with an information gate σ(W_g x_l), which
    lets the network go deeper than DCNv2 without its quality falling.
    `structure="stacked"` (GDCN-S) feeds the cross output to the DNN;
    `structure="parallel"` (GDCN-P) runs the DNN on x0 beside it and
    concatenates both outputs. The paper's Field-level Dimension
    Optimization (per-field embedding sizes) is a preprocessing choice: set
    each feature's `embedding_dim` in the spec. The body is `GDCNBackbone`.

    Defaults: 3 gated cross layers stacked under a DNN of (400, 400, 400)
    (a choice; the paper studies depths up to 8 and more, where the gates
    keep the deeper networks improving).

    Reference: Wang et al., 2023, "Towards Deeper, Lighter and
    Interpretable Cross Network for CTR Prediction" (CIKM).

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: the tasks.
        num_cross_layers: gated cross layers.
        structure: "stacked" or "parallel".
        hidden_units: widths of the DNN; () for the cross network alone.
        dropout: dropout rate of the DNN.
        activation: DNN activation.
        normalization: None, "batch" or "layer" in the DNN.

    Example:

    >>> model = GDCN(spec, tasks="click", num_cross_layers=3, hidden_units=[400, 400])
    """

    def __init__(
        self,
        spec,
        tasks,
        num_cross_layers: int = 3,
        structure: str = "stacked",
        hidden_units: Sequence[int] = (400, 400, 400),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, tasks, **kwargs)
        self.backbone = GDCNBackbone(
            num_cross_layers=num_cross_layers,
            structure=structure,
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()
