"""MaskNet: instance-guided masks and MaskBlocks over the field embeddings (serial or parallel)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_recsys.layers.embedding import stack_fields
from keras_recsys.layers.interaction.mask_block import MaskNetBlocks
from keras_recsys.layers.mlp import MLP
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel
from keras_recsys.models.interaction.deepfm import spec_dim


def check_numeric_fields(backbone: Backbone, model: str) -> None:
    """Models over the list of field embeddings read numeric features as fields only."""
    if backbone.embedding.dense and not backbone.numeric_field_dim:
        raise ValueError(
            f"{model} reads every feature as a field embedding: numeric features "
            f"{backbone.embedding.dense} need numeric_field_dim (its builder sets it to "
            "the spec's default embedding size)."
        )


@keras.saving.register_keras_serializable(package="keras_recsys")
class MaskNetBackbone(Backbone):
    """MaskNet's body: "hidden" = MLP(`MaskNetBlocks`(e_1..e_F)).

    The stacked field embeddings (numeric features are fields
    e_j = x_j · v_j, as in the paper) go through K MaskBlocks, in parallel
    or in series (`MaskNetBlocks`); an MLP on their output gives "hidden"
    (with `hidden_units=()`, the blocks' output itself). No logit-level
    terms.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`
            (MaskNet needs `numeric_field_dim` when the spec has numeric
            features).
        structure: "parallel" (ParaMaskNet) or "serial" (SerMaskNet).
        num_blocks: MaskBlocks K.
        block_units: output width of every MaskBlock.
        reduction_ratio: every mask's aggregation width / V_emb width.
        hidden_units: widths of the MLP after the blocks.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> backbone = MaskNetBackbone(spec, {"click": 1}, block_units=32,
    ...                            hidden_units=[64], numeric_field_dim=8)
    >>> backbone(batch)["hidden"].shape
    (B, 64)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        structure: str = "parallel",
        num_blocks: int = 3,
        block_units: int = 64,
        reduction_ratio: float = 2.0,
        hidden_units: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
        check_numeric_fields(self, "MaskNet")
        self.mask_net = MaskNetBlocks(
            num_blocks,
            block_units,
            structure,
            reduction_ratio,
            dtype=self.dtype_policy,
            name="mask_net",
        )
        self.structure = self.mask_net.structure
        self.num_blocks = self.mask_net.num_blocks
        self.block_units = self.mask_net.units
        self.reduction_ratio = self.mask_net.reduction_ratio
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
        fields = stack_fields(embedded["fields"], self.field_names)
        hidden = self.mask_net(fields)
        if self.mlp is not None:
            hidden = self.mlp(hidden, training=training)
        return {"hidden": hidden}

    def gradnorm_variables(self) -> list:
        """The MLP's last layer; without an MLP, the blocks whose outputs the
        heads read (every block in parallel, the last one in series)."""
        if self.mlp is not None:
            return list(self.mlp.dense_layers[-1].trainable_variables)
        blocks = self.mask_net.blocks
        read = blocks if self.structure == "parallel" else blocks[-1:]
        return [v for block in read for v in block.trainable_variables]

    def get_config(self):
        config = super().get_config()
        config.update(
            structure=self.structure,
            num_blocks=self.num_blocks,
            block_units=self.block_units,
            reduction_ratio=self.reduction_ratio,
            hidden_units=self.hidden_units,
            dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class MaskNet(RecModel):
    """MaskNet: logit = head(MLP(MaskBlocks(e_1..e_F))).

    An instance-guided mask V_mask = W_2 ReLU(W_1 V_emb + b_1) + b_2, computed
    from the concatenated field embeddings V_emb, multiplies either the
    layer-normalized embeddings LN_EMB(V_emb) (each field normalized on its
    own) or the previous block's output h; a MaskBlock then computes
    ReLU(LN(W · (V_mask ⊙ ·))), a feed-forward layer with both additive and
    multiplicative interactions. `structure` switches the two networks of
    the paper:

    * "parallel" (ParaMaskNet): K blocks on LN_EMB(V_emb) side by side, their
      outputs concatenated, then feed-forward layers (`hidden_units`);
    * "serial" (SerMaskNet): block 1 on LN_EMB(V_emb), block k on block
      k − 1's output, every mask computed from V_emb; the paper feeds the
      last block to the output layer directly (`hidden_units=()`).

    Numeric features are fields e_j = x_j · v_j, as in the paper, so every
    field embedding has the same size. The body is `MaskNetBackbone`.
    Defaults: 3 blocks (as Pinterest's parallel MaskNet) and the reduction
    ratio 2.0 (Pinterest's projection ratio); the block width 64 and the
    MLP (256, 128) are choices for small feature sets.

    Reference: Wang, She and Zhang, 2021, "MaskNet: Introducing
    Feature-Wise Multiplication to CTR Ranking Models by Instance-Guided
    Mask" (DLP-KDD).

    Args:
        spec: a fitted `FeatureSpec` (one embedding size for all fields).
        tasks: the tasks.
        structure: "parallel" or "serial".
        num_blocks: MaskBlocks K.
        block_units: output width of every MaskBlock.
        reduction_ratio: every mask's aggregation width / V_emb width.
        hidden_units: widths of the MLP after the blocks; () for none.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> model = MaskNet(spec, tasks="click")                                  # ParaMaskNet
    >>> model = MaskNet(spec, tasks="click", structure="serial", hidden_units=())  # SerMaskNet
    """

    def __init__(
        self,
        spec,
        tasks,
        structure: str = "parallel",
        num_blocks: int = 3,
        block_units: int = 64,
        reduction_ratio: float = 2.0,
        hidden_units: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        kwargs.setdefault("numeric_field_dim", spec_dim(spec))
        super().__init__(spec, tasks, **kwargs)
        self.backbone = MaskNetBackbone(
            structure=structure,
            num_blocks=num_blocks,
            block_units=block_units,
            reduction_ratio=reduction_ratio,
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()
