"""DHEN: a deep hierarchy of ensembles of heterogeneous interaction modules."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.embedding import stack_fields
from keras_recsys.layers.interaction.dhen import INTERACTION_MODULES, DHENLayer
from keras_recsys.layers.mlp import MLP
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel
from keras_recsys.models.interaction.deepfm import spec_dim
from keras_recsys.models.interaction.masknet import check_numeric_fields


@keras.saving.register_keras_serializable(package="keras_recsys")
class DHENBackbone(Backbone):
    """DHEN's body: "hidden" = MLP(flatten(DHEN layers(e_1..e_F))).

    The stacked field embeddings X_0 (B, F, d) (numeric features are fields
    e_j = x_j · v_j) go through `num_layers` `DHENLayer`s, each an ensemble
    of the same interaction modules with its own weights; the last
    layer's list (B, F, d) is flattened and an MLP on it gives "hidden"
    (with `hidden_units=()`, the flattened list itself). No logit-level
    terms.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`
            (DHEN needs `numeric_field_dim` when the spec has numeric
            features).
        num_layers: DHEN layers.
        interaction_modules: the modules of every layer's ensemble (see
            `DHENLayer`).
        num_heads: attention heads of the "self_attention" module.
        dcn_projection_dim: rank of the "dcn" module (None: full rank).
        attention_dropout: dropout rate of the "self_attention" module.
        hidden_units: widths of the MLP on the last layer's output.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> backbone = DHENBackbone(spec, {"click": 1}, num_layers=2, hidden_units=[64],
    ...                         numeric_field_dim=8)
    >>> backbone(batch)["hidden"].shape
    (B, 64)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        num_layers: int = 2,
        interaction_modules: Sequence[str] = INTERACTION_MODULES,
        num_heads: int = 2,
        dcn_projection_dim: int | None = None,
        attention_dropout: float = 0.0,
        hidden_units: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        if int(num_layers) < 1:
            raise ValueError(f"DHEN needs num_layers >= 1, got {num_layers}.")
        super().__init__(spec, task_units, **kwargs)
        check_numeric_fields(self, "DHEN")
        self.num_layers = int(num_layers)
        self.dhen_layers = [
            DHENLayer(
                interaction_modules,
                num_heads=num_heads,
                dcn_projection_dim=dcn_projection_dim,
                dropout=attention_dropout,
                dtype=self.dtype_policy,
                name=f"dhen_{i}",
            )
            for i in range(self.num_layers)
        ]
        first = self.dhen_layers[0]
        self.interaction_modules = first.interaction_modules
        self.num_heads = first.num_heads
        self.dcn_projection_dim = first.dcn_projection_dim
        self.attention_dropout = first.dropout
        self.hidden_units = [int(u) for u in hidden_units]
        self.dropout = dropout
        self.activation = activation
        self.normalization = normalization
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
        x = stack_fields(embedded["fields"], self.field_names)
        for layer in self.dhen_layers:
            x = layer(x, training=training)
        hidden = ops.reshape(x, (-1, x.shape[1] * x.shape[2]))
        if self.mlp is not None:
            hidden = self.mlp(hidden, training=training)
        return {"hidden": hidden}

    def gradnorm_variables(self) -> list:
        """The MLP's last layer, or the last DHEN layer without an MLP."""
        if self.mlp is not None:
            return list(self.mlp.dense_layers[-1].trainable_variables)
        return list(self.dhen_layers[-1].trainable_variables)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_layers=self.num_layers,
            interaction_modules=self.interaction_modules,
            num_heads=self.num_heads,
            dcn_projection_dim=self.dcn_projection_dim,
            attention_dropout=self.attention_dropout,
            hidden_units=self.hidden_units,
            dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class DHEN(RecModel):
    """DHEN: logit = head(MLP(flatten(X_N))), X_{l+1} = LN(W_e [M_1(X_l), ..., M_k(X_l)] + X_l).

    Every feature is a vector of one size d (numeric ones as
    e_j = x_j · v_j), and the list X_0 of these F vectors goes through N
    layers. A layer (`DHENLayer`) applies k heterogeneous interaction
    modules to the same list (pairwise dot products, a Transformer
    self-attention layer, a DCNv2 cross layer, a linear map over the
    list), each returning a list of the same shape, concatenates their
    outputs vector by vector, projects them back to d, adds the shortcut
    X_l and layer-normalizes. Layer l + 1 applies every module to the mix
    of layer l's modules, so the hierarchy holds k^N chains of
    interactions of different orders and kinds. The last list is
    flattened into an MLP. The body is `DHENBackbone`.

    Defaults: 2 layers of all four modules, 2 attention heads, full-rank
    DCN, an MLP of (256, 128) (choices; the paper reports its module
    combinations and depths on Meta's data only).

    Reference: Zhang et al., 2022, "DHEN: A Deep and Hierarchical Ensemble
    Network for Large-Scale Click-Through Rate Prediction"
    (arXiv:2203.11014).

    Args:
        spec: a fitted `FeatureSpec` (one embedding size for all fields).
        tasks: the tasks.
        num_layers: DHEN layers N.
        interaction_modules: the modules of every layer, names from
            "dot", "self_attention", "dcn" and "linear".
        num_heads: attention heads of the "self_attention" module (the
            embedding size must be a multiple of it).
        dcn_projection_dim: rank of the "dcn" module (None: full rank).
        attention_dropout: dropout rate of the "self_attention" module.
        hidden_units: widths of the MLP; () for none.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> model = DHEN(spec, tasks="click", num_layers=2,
    ...              interaction_modules=["self_attention", "dcn"])
    """

    def __init__(
        self,
        spec,
        tasks,
        num_layers: int = 2,
        interaction_modules: Sequence[str] = INTERACTION_MODULES,
        num_heads: int = 2,
        dcn_projection_dim: int | None = None,
        attention_dropout: float = 0.0,
        hidden_units: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        kwargs.setdefault("numeric_field_dim", spec_dim(spec))
        super().__init__(spec, tasks, **kwargs)
        self.backbone = DHENBackbone(
            num_layers=num_layers,
            interaction_modules=interaction_modules,
            num_heads=num_heads,
            dcn_projection_dim=dcn_projection_dim,
            attention_dropout=attention_dropout,
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()
