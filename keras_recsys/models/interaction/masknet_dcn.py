"""MaskNetDCN: Pinterest's Homefeed ranking stack, DCNv2 layers on parallel MaskBlocks."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras_rs.layers import FeatureCross

from keras_recsys.layers.embedding import stack_fields
from keras_recsys.layers.interaction.mask_block import MaskNetBlocks
from keras_recsys.layers.mlp import MLP
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel
from keras_recsys.models.interaction.deepfm import spec_dim
from keras_recsys.models.interaction.masknet import check_numeric_fields


@keras.saving.register_keras_serializable(package="keras_recsys")
class MaskNetDCNBackbone(Backbone):
    """MaskNetDCN's body: "hidden" = MLP(DCNv2 layers(parallel MaskBlocks(e_1..e_F))).

    The stacked field embeddings (numeric features are fields) go through
    K parallel MaskBlocks (`MaskNetBlocks`, `structure="parallel"`); their
    concatenated output m (B, K · block_units) is x0 of `num_cross_layers`
    DCNv2 cross layers (keras-rs `FeatureCross`,
    x_{l+1} = x0 ⊙ (W_l x_l + b_l) + x_l); the last cross layer's output
    goes to the MLP (no concatenation of the cross input with its output,
    which Pinterest removed for latency). No logit-level terms.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`
            (the model needs `numeric_field_dim` when the spec has numeric
            features).
        num_blocks: parallel MaskBlocks K.
        block_units: output width of every MaskBlock.
        reduction_ratio: every mask's aggregation width / V_emb width.
        num_cross_layers: DCNv2 layers on the MaskBlocks' output.
        projection_dim: rank of the cross layers' W (None: full rank).
        hidden_units: widths of the MLP after the cross layers.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> backbone = MaskNetDCNBackbone(spec, {"click": 1}, block_units=16,
    ...                               hidden_units=[64], numeric_field_dim=8)
    >>> backbone(batch)["hidden"].shape
    (B, 64)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        num_blocks: int = 3,
        block_units: int = 512,
        reduction_ratio: float = 2.0,
        num_cross_layers: int = 4,
        projection_dim: int | None = None,
        hidden_units: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        if int(num_cross_layers) < 1:
            raise ValueError(f"MaskNetDCN needs num_cross_layers >= 1, got {num_cross_layers}.")
        super().__init__(spec, task_units, **kwargs)
        check_numeric_fields(self, "MaskNetDCN")
        self.mask_net = MaskNetBlocks(
            num_blocks,
            block_units,
            "parallel",
            reduction_ratio,
            dtype=self.dtype_policy,
            name="mask_net",
        )
        self.num_blocks = self.mask_net.num_blocks
        self.block_units = self.mask_net.units
        self.reduction_ratio = self.mask_net.reduction_ratio
        self.num_cross_layers = int(num_cross_layers)
        self.projection_dim = None if projection_dim is None else int(projection_dim)
        self.hidden_units = [int(u) for u in hidden_units]
        self.dropout = dropout
        self.activation = activation
        self.normalization = normalization
        self.cross_layers = [
            FeatureCross(
                projection_dim=self.projection_dim, dtype=self.dtype_policy, name=f"cross_{i}"
            )
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
        fields = stack_fields(embedded["fields"], self.field_names)
        x0 = self.mask_net(fields)
        crossed = x0
        for layer in self.cross_layers:
            crossed = layer(x0, crossed)
        hidden = crossed if self.mlp is None else self.mlp(crossed, training=training)
        return {"hidden": hidden}

    def gradnorm_variables(self) -> list:
        """The MLP's last layer, or the last cross layer without an MLP."""
        if self.mlp is not None:
            return list(self.mlp.dense_layers[-1].trainable_variables)
        return list(self.cross_layers[-1].trainable_variables)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_blocks=self.num_blocks,
            block_units=self.block_units,
            reduction_ratio=self.reduction_ratio,
            num_cross_layers=self.num_cross_layers,
            projection_dim=self.projection_dim,
            hidden_units=self.hidden_units,
            dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class MaskNetDCN(RecModel):
    """Pinterest's MaskNet + DCNv2 ranking stack: logit = head(MLP(DCNv2^L(ParaMaskNet(e)))).

    The feature interaction part of Pinterest's Homefeed ranking model as
    its engineers describe it: a parallel MaskNet of 3 MaskBlocks
    (projection ratio 2.0, output dimension 512, read here as the width of
    every block) whose output is the input of 4 stacked DCNv2 layers
    (higher-order interactions on top of the MaskNet's), followed by the
    MLP, without the concatenation of the
    cross layers' input and output before the MLP (removed for latency).
    MaskBlock: ReLU(LN(W · (V_mask ⊙ LN_EMB(V_emb)))) with an
    instance-guided mask V_mask from the concatenated embeddings V_emb
    (see `MaskNet`); cross layer: x_{l+1} = x0 ⊙ (W_l x_l + b_l) + x_l with
    x0 the MaskBlocks' concatenated output (keras-rs `FeatureCross`, full
    rank or rank `projection_dim`). Numeric features are fields
    e_j = x_j · v_j. Pinterest's own input transformations (normalized
    dense features, L2-normalized embeddings, Transformer user sequences)
    are not part of this builder. The body is `MaskNetDCNBackbone`.

    Defaults are the reported production configuration (3 blocks, ratio
    2.0, 512 units, 4 full-rank cross layers); the MLP widths (256, 128)
    are a choice (Pinterest reports only that it reduced them).

    Reference: Malreddy et al., 2024, "Improving feature interactions at
    Pinterest under industry constraints" (Pinterest, arXiv:2412.01985),
    built on Wang, She and Zhang, 2021, "MaskNet" and Wang et al., 2021,
    "DCN V2".

    Args:
        spec: a fitted `FeatureSpec` (one embedding size for all fields).
        tasks: the tasks.
        num_blocks: parallel MaskBlocks.
        block_units: output width of every MaskBlock.
        reduction_ratio: every mask's aggregation width / V_emb width
            (Pinterest's projection ratio).
        num_cross_layers: DCNv2 layers on the MaskBlocks' output.
        projection_dim: rank of the cross layers' W (None: full rank).
        hidden_units: widths of the MLP; () for none.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> model = MaskNetDCN(spec, tasks=["save", "click"])           # the reported sizes
    >>> model = MaskNetDCN(spec, tasks="click", block_units=64, projection_dim=32)
    """

    def __init__(
        self,
        spec,
        tasks,
        num_blocks: int = 3,
        block_units: int = 512,
        reduction_ratio: float = 2.0,
        num_cross_layers: int = 4,
        projection_dim: int | None = None,
        hidden_units: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        kwargs.setdefault("numeric_field_dim", spec_dim(spec))
        super().__init__(spec, tasks, **kwargs)
        self.backbone = MaskNetDCNBackbone(
            num_blocks=num_blocks,
            block_units=block_units,
            reduction_ratio=reduction_ratio,
            num_cross_layers=num_cross_layers,
            projection_dim=projection_dim,
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()
