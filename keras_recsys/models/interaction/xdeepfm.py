"""xDeepFM: linear part + Compressed Interaction Network + DNN."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.embedding import flatten_fields, stack_fields
from keras_recsys.layers.interaction.cin import CompressedInteractionNetwork
from keras_recsys.layers.mlp import MLP
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel
from keras_recsys.models.interaction.deepfm import spec_dim


@keras.saving.register_keras_serializable(package="keras_recsys")
class XDeepFMBackbone(Backbone):
    """xDeepFM's body: "hidden" = [CIN(e_1..e_F), MLP(x0)]; "logits" = LR(x) per task.

    The CIN reads the stacked field embeddings X^0 (B, F, d) and returns its
    sum-pooled feature maps p+; the MLP reads x0, the same embeddings
    flattened (numeric features are fields, as in the paper). A task head
    on "hidden" is the paper's output unit w_cinᵀ p+ + w_dnnᵀ x_dnn + b;
    the linear part is per task, as in DeepFM.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`
            (xDeepFM needs `numeric_field_dim`, the size of every field).
        cin_layer_units: feature maps of every CIN layer.
        cin_activation: activation of the CIN's feature maps (None: identity).
        cin_split_half: see `CompressedInteractionNetwork`.
        hidden_units: widths of the MLP (empty: the CIN alone, "xDeepFM
            without DNN").
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> backbone = kr.models.XDeepFMBackbone(
    ...     spec, {"click": 1}, cin_layer_units=[16, 16], hidden_units=[32], numeric_field_dim=8
    ... )
    >>> backbone(batch)["hidden"].shape  # 16 + 16 pooled maps, 32 MLP units
    (B, 64)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        cin_layer_units: Sequence[int] = (200, 200, 200),
        cin_activation: str | None = None,
        cin_split_half: bool = False,
        hidden_units: Sequence[int] = (400, 400),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
        self.cin_layer_units = [int(u) for u in cin_layer_units]
        self.cin_activation = cin_activation
        self.cin_split_half = bool(cin_split_half)
        self.hidden_units = [int(u) for u in hidden_units]
        self.dropout = dropout
        self.activation = activation
        self.normalization = normalization
        self.linear = self.make_linear_term("linear")
        self.cin = CompressedInteractionNetwork(
            self.cin_layer_units,
            activation=cin_activation,
            split_half=self.cin_split_half,
            dtype=self.dtype_policy,
            name="cin",
        )
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
        fields = stack_fields(embedded["fields"], self.field_names)
        hidden = self.cin(fields)
        if self.mlp is not None:
            x0 = flatten_fields(fields, embedded["dense"])
            hidden = ops.concatenate([hidden, self.mlp(x0, training=training)], axis=-1)
        return {
            "hidden": hidden,
            "logits": self.split_by_task(self.linear(inputs, embedded["dense"])),
        }

    def gradnorm_variables(self) -> list:
        """The last CIN layer and the MLP's last layer: both feed the task heads."""
        variables = [self.cin.kernels[-1]]
        if self.mlp is not None:
            variables += list(self.mlp.dense_layers[-1].trainable_variables)
        return variables

    def get_config(self):
        config = super().get_config()
        config.update(
            cin_layer_units=self.cin_layer_units,
            cin_activation=self.cin_activation,
            cin_split_half=self.cin_split_half,
            hidden_units=self.hidden_units,
            dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class XDeepFM(RecModel):
    """xDeepFM: logit = LR(x) + head([CIN(e_1..e_F), MLP(x0)]).

    The Compressed Interaction Network learns bounded-degree interactions
    explicitly and at the vector level: layer k computes
    X^k_h = Σ_i Σ_j W^{k,h}_{ij} (X^{k−1}_i ⊙ X^0_j) from the previous
    layer and the field embeddings X^0, and every layer's maps, summed over
    the embedding dimension, form p+ (`CompressedInteractionNetwork`).
    The MLP learns implicit, bit-level interactions from the same
    embeddings, and the linear part the first-order terms; the paper's
    output unit σ(w_linᵀ a + w_dnnᵀ x_dnn + w_cinᵀ p+ + b) is the task head
    on [p+, x_dnn] plus the linear term. Numeric features enter as fields
    e_i = x_i · v_i (every field must have the same size). The body is
    `XDeepFMBackbone`.

    Defaults are the paper's settings for Criteo: 3 CIN layers of 200
    feature maps, a 2-layer MLP of 400 units, no activation in the CIN.

    Reference: Lian et al., 2018, "xDeepFM: Combining Explicit and Implicit
    Feature Interactions for Recommender Systems" (KDD).

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: the tasks.
        cin_layer_units: feature maps of every CIN layer.
        cin_activation: activation of the CIN's feature maps (None: identity).
        cin_split_half: every CIN layer but the last sends half of its maps
            on and sum-pools the other half (an option of the authors' code).
        hidden_units: widths of the MLP (empty: no MLP).
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> model = kr.models.XDeepFM(spec, tasks="click", cin_layer_units=[100, 100])
    """

    def __init__(
        self,
        spec,
        tasks,
        cin_layer_units: Sequence[int] = (200, 200, 200),
        cin_activation: str | None = None,
        cin_split_half: bool = False,
        hidden_units: Sequence[int] = (400, 400),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        kwargs.setdefault("numeric_field_dim", spec_dim(spec))
        super().__init__(spec, tasks, **kwargs)
        self.backbone = XDeepFMBackbone(
            cin_layer_units=cin_layer_units,
            cin_activation=cin_activation,
            cin_split_half=cin_split_half,
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()
