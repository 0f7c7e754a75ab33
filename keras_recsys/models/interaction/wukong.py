"""WuKong: a stack of Factorization Machine Blocks and Linear Compress Blocks."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.embedding import stack_fields
from keras_recsys.layers.interaction.wukong import WuKongLayer
from keras_recsys.layers.mlp import MLP
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel
from keras_recsys.models.interaction.deepfm import spec_dim
from keras_recsys.models.interaction.masknet import check_numeric_fields


@keras.saving.register_keras_serializable(package="keras_recsys")
class WuKongBackbone(Backbone):
    """WuKong's body: "hidden" = MLP(flatten(interaction stack(e_1..e_F))).

    The stacked field embeddings X_0 (B, F, d) (numeric features are fields
    e_j = x_j · v_j) go through `num_layers` `WuKongLayer`s, each turning
    its n input embeddings into n_F + n_L; the last layer's embeddings are
    flattened and an MLP on them gives "hidden" (with `hidden_units=()`,
    the flattened embeddings themselves). No logit-level terms.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`
            (WuKong needs `numeric_field_dim` when the spec has numeric
            features).
        num_layers: interaction layers l.
        num_fmb_embeddings: n_F, the embeddings every FMB outputs.
        num_lcb_embeddings: n_L, the embeddings every LCB outputs.
        fmb_rank: k, the rank of every FMB's compression.
        fmb_hidden_units: hidden widths of every FMB's MLP.
        hidden_units: widths of the final MLP.
        dropout: dropout rate of the FMBs' MLPs and the final MLP.
        activation: activation of the FMBs' MLPs and the final MLP.
        normalization: None, "batch" or "layer" in the final MLP.

    Example:

    >>> backbone = WuKongBackbone(spec, {"click": 1}, num_layers=2, num_fmb_embeddings=8,
    ...                           num_lcb_embeddings=8, fmb_rank=4, hidden_units=[64],
    ...                           numeric_field_dim=8)
    >>> backbone(batch)["hidden"].shape
    (B, 64)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        num_layers: int = 3,
        num_fmb_embeddings: int = 16,
        num_lcb_embeddings: int = 16,
        fmb_rank: int = 24,
        fmb_hidden_units: Sequence[int] = (512,),
        hidden_units: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        if int(num_layers) < 1:
            raise ValueError(f"WuKong needs num_layers >= 1, got {num_layers}.")
        super().__init__(spec, task_units, **kwargs)
        check_numeric_fields(self, "WuKong")
        self.num_layers = int(num_layers)
        self.num_fmb_embeddings = int(num_fmb_embeddings)
        self.num_lcb_embeddings = int(num_lcb_embeddings)
        self.fmb_rank = int(fmb_rank)
        self.fmb_hidden_units = [int(u) for u in fmb_hidden_units]
        self.hidden_units = [int(u) for u in hidden_units]
        self.dropout = dropout
        self.activation = activation
        self.normalization = normalization
        self.wukong_layers = [
            WuKongLayer(
                self.num_fmb_embeddings,
                self.num_lcb_embeddings,
                self.fmb_rank,
                self.fmb_hidden_units,
                activation,
                dropout,
                dtype=self.dtype_policy,
                name=f"wukong_{i}",
            )
            for i in range(self.num_layers)
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
        x = stack_fields(embedded["fields"], self.field_names)
        for layer in self.wukong_layers:
            x = layer(x, training=training)
        hidden = ops.reshape(x, (-1, x.shape[1] * x.shape[2]))
        if self.mlp is not None:
            hidden = self.mlp(hidden, training=training)
        return {"hidden": hidden}

    def gradnorm_variables(self) -> list:
        """The final MLP's last layer, or the last interaction layer without an MLP."""
        if self.mlp is not None:
            return list(self.mlp.dense_layers[-1].trainable_variables)
        return list(self.wukong_layers[-1].trainable_variables)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_layers=self.num_layers,
            num_fmb_embeddings=self.num_fmb_embeddings,
            num_lcb_embeddings=self.num_lcb_embeddings,
            fmb_rank=self.fmb_rank,
            fmb_hidden_units=self.fmb_hidden_units,
            hidden_units=self.hidden_units,
            dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class WuKong(RecModel):
    """WuKong: logit = head(MLP(flatten(X_l))), X_{i+1} = LN([FMB(X_i), LCB(X_i)] + X_i).

    Every feature is an embedding of one size d (numeric ones as
    e_j = x_j · v_j); the n embeddings X_0 go through l interaction
    layers (`WuKongLayer`). In each, a Factorization Machine Block takes
    the pairwise dot products of the embeddings, computed cheaply as
    X (Xᵀ Y) with a learned Y of rank k, layer-normalizes them and maps
    them by an MLP to n_F new embeddings; a Linear Compress Block
    recombines the embeddings into n_L (W X); both are stacked, the
    residual (projected when n ≠ n_F + n_L) is added and every embedding
    layer-normalized. Layer i holds interactions of every order up to 2^i,
    and the model scales up by depth (l) and width (n_F, n_L, k, the FMB's
    MLP). The last layer's embeddings are flattened into an MLP. The body
    is `WuKongBackbone`.

    Defaults: 3 layers, n_F = n_L = 16, k = 24, one FMB hidden layer of
    512 and a final MLP of (256, 128) (choices for small feature sets; the
    paper scales these with the data).

    Reference: Zhang et al., 2024, "Wukong: Towards a Scaling Law for
    Large-Scale Recommendation" (ICML).

    Args:
        spec: a fitted `FeatureSpec` (one embedding size for all fields).
        tasks: the tasks.
        num_layers: interaction layers l.
        num_fmb_embeddings: n_F.
        num_lcb_embeddings: n_L.
        fmb_rank: k.
        fmb_hidden_units: hidden widths of every FMB's MLP.
        hidden_units: widths of the final MLP; () for none.
        dropout: dropout rate of the FMBs' MLPs and the final MLP.
        activation: activation of the FMBs' MLPs and the final MLP.
        normalization: None, "batch" or "layer" in the final MLP.

    Example:

    >>> model = WuKong(spec, tasks="click", num_layers=2, num_fmb_embeddings=8,
    ...                num_lcb_embeddings=8, fmb_rank=8)
    """

    def __init__(
        self,
        spec,
        tasks,
        num_layers: int = 3,
        num_fmb_embeddings: int = 16,
        num_lcb_embeddings: int = 16,
        fmb_rank: int = 24,
        fmb_hidden_units: Sequence[int] = (512,),
        hidden_units: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        kwargs.setdefault("numeric_field_dim", spec_dim(spec))
        super().__init__(spec, tasks, **kwargs)
        self.backbone = WuKongBackbone(
            num_layers=num_layers,
            num_fmb_embeddings=num_fmb_embeddings,
            num_lcb_embeddings=num_lcb_embeddings,
            fmb_rank=fmb_rank,
            fmb_hidden_units=fmb_hidden_units,
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()
