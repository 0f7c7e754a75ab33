"""MaskNet's pieces: the instance-guided mask, the MaskBlock, and blocks in series or in parallel."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

_STRUCTURES = ("parallel", "serial")


def _fresh(initializer: keras.initializers.Initializer) -> keras.initializers.Initializer:
    # One instance per sublayer: a seeded initializer shared by several
    # sublayers would give all of them the same initial weights.
    return keras.initializers.get(keras.initializers.serialize(initializer))


@keras.saving.register_keras_serializable(package="keras_recsys")
class InstanceGuidedMask(keras.layers.Layer):
    """V_mask = W_2 · ReLU(W_1 · v + b_1) + b_2: a per-example, per-unit mask.

    `v` is the input instance (MaskNet: the concatenated feature embeddings
    V_emb). The first, wider "aggregation" layer gathers global context
    from the whole instance; the second "projection" layer maps it to the
    size of what the mask multiplies (an embedding layer or a hidden
    layer), `units`. The aggregation width is `reduction_ratio` times the
    instance width (the paper's reduction ratio; Pinterest's "projection
    ratio"), at least 1. The mask is not squashed: its entries scale the
    masked units up or down, or flip their sign.

    Reference: Wang, She and Zhang, 2021, "MaskNet: Introducing
    Feature-Wise Multiplication to CTR Ranking Models by Instance-Guided
    Mask" (DLP-KDD) (the instance-guided mask).

    Args:
        units: size of the mask (the width of the tensor it multiplies).
        reduction_ratio: aggregation width / instance width.
        kernel_initializer: initializer of both kernels.

    Example:

    >>> mask = kr.layers.InstanceGuidedMask(units=16, reduction_ratio=2.0)
    >>> mask(keras.ops.ones((4, 24))).shape  # aggregation layer of 48 units
    (4, 16)
    """

    def __init__(
        self,
        units: int,
        reduction_ratio: float = 2.0,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"InstanceGuidedMask needs units >= 1, got {units}.")
        if float(reduction_ratio) <= 0:
            raise ValueError(f"reduction_ratio must be positive, got {reduction_ratio}.")
        self.units = int(units)
        self.reduction_ratio = float(reduction_ratio)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def aggregation_units(self, instance_width: int) -> int:
        """Width of the aggregation layer for an instance of `instance_width` units."""
        return max(1, round(self.reduction_ratio * instance_width))

    def build(self, input_shape) -> None:
        width = int(input_shape[-1])
        self.aggregation = keras.layers.Dense(
            self.aggregation_units(width),
            activation="relu",
            kernel_initializer=_fresh(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="aggregation",
        )
        self.projection = keras.layers.Dense(
            self.units,
            kernel_initializer=_fresh(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="projection",
        )
        self.aggregation.build(tuple(input_shape))
        self.projection.build(tuple(input_shape[:-1]) + (self.aggregation.units,))
        self.built = True

    def call(self, inputs):
        return self.projection(self.aggregation(ops.cast(inputs, self.compute_dtype)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            units=self.units,
            reduction_ratio=self.reduction_ratio,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class MaskBlock(keras.layers.Layer):
    """y = act(LN(W · (V_mask ⊙ h))), V_mask = `InstanceGuidedMask`(v).

    `h` is what the block masks: the layer-normalized feature embeddings
    (the paper's "MaskBlock on feature embedding") or the output of the
    previous block ("MaskBlock on MaskBlock"); `v` is the input instance
    that guides the mask (the raw concatenated embeddings V_emb). The mask
    has the width of `h`. The masked product goes through a feed-forward
    layer W without bias (the layer normalization after it has its own
    shift β), then layer normalization and the activation (ReLU in the
    paper), which is how the paper normalizes every hidden layer:
    LN_HID(W x) = ReLU(LN(W x)).

    Reference: Wang, She and Zhang, 2021, "MaskNet" (DLP-KDD) (MaskBlock
    on feature embedding, MaskBlock on MaskBlock).

    Args:
        units: output width of the block.
        reduction_ratio: the mask's aggregation width / instance width.
        activation: applied after the layer normalization.
        layer_norm_epsilon: epsilon of the layer normalization.
        kernel_initializer: initializer of the mask's and the block's kernels.

    Call arguments:
        hidden: h, (B, D_h).
        instance: v, (B, D_v).

    Example:

    >>> block = kr.layers.MaskBlock(units=32)
    >>> block(keras.ops.ones((4, 24)), keras.ops.ones((4, 24))).shape
    (4, 32)
    """

    def __init__(
        self,
        units: int,
        reduction_ratio: float = 2.0,
        activation: str | None = "relu",
        layer_norm_epsilon: float = 1e-5,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"MaskBlock needs units >= 1, got {units}.")
        self.units = int(units)
        self.reduction_ratio = float(reduction_ratio)
        self.activation = activation
        self._activation = keras.activations.get(activation)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, hidden_shape, instance_shape) -> None:
        hidden_shape, instance_shape = tuple(hidden_shape), tuple(instance_shape)
        self.mask = InstanceGuidedMask(
            int(hidden_shape[-1]),
            self.reduction_ratio,
            kernel_initializer=_fresh(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="mask",
        )
        self.dense = keras.layers.Dense(
            self.units,
            use_bias=False,
            kernel_initializer=_fresh(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="dense",
        )
        self.norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="norm"
        )
        self.mask.build(instance_shape)
        self.dense.build(hidden_shape)
        self.norm.build(hidden_shape[:-1] + (self.units,))
        self.built = True

    def call(self, hidden, instance):
        hidden = ops.cast(hidden, self.compute_dtype)
        masked = self.mask(instance) * hidden
        return self._activation(self.norm(self.dense(masked)))

    def compute_output_shape(self, hidden_shape, instance_shape):
        return tuple(hidden_shape[:-1]) + (self.units,)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            units=self.units,
            reduction_ratio=self.reduction_ratio,
            activation=self.activation,
            layer_norm_epsilon=self.layer_norm_epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class MaskNetBlocks(keras.layers.Layer):
    """MaskNet's interaction part: MaskBlocks on field embeddings, in parallel or in series.

    For fields E = (e_1, ..., e_F) of one size d, with V_emb = [e_1, ..., e_F]
    the instance that guides every mask and
    LN_EMB(V_emb) = [LN(e_1), ..., LN(e_F)] (each field normalized on its own
    d units; one LayerNormalization whose γ, β all fields share, a choice
    where the paper is silent):

    * `structure="parallel"` (ParaMaskNet): K blocks all mask LN_EMB(V_emb),
      output [MaskBlock_1(LN_EMB(V_emb), V_emb), ..., MaskBlock_K(...)],
      (B, K · units);
    * `structure="serial"` (SerMaskNet): h_1 = MaskBlock_1(LN_EMB(V_emb), V_emb),
      h_k = MaskBlock_k(h_{k−1}, V_emb); output h_K, (B, units).

    Every block has its own instance-guided mask. Pinterest's production
    model uses 3 parallel blocks with reduction (projection) ratio 2.0 and
    512 units before its DCNv2 layers (`MaskNetDCN`).

    Reference: Wang, She and Zhang, 2021, "MaskNet" (DLP-KDD)
    (SerMaskNet and ParaMaskNet).

    Args:
        num_blocks: number of MaskBlocks K.
        units: output width of every block.
        structure: "parallel" or "serial".
        reduction_ratio: every mask's aggregation width / instance width.
        activation: activation of every block.
        layer_norm_epsilon: epsilon of every layer normalization.
        kernel_initializer: initializer of every kernel.

    Example:

    >>> blocks = kr.layers.MaskNetBlocks(num_blocks=3, units=16)
    >>> blocks(keras.random.normal((4, 5, 8))).shape  # 5 fields of size 8
    (4, 48)
    """

    def __init__(
        self,
        num_blocks: int = 3,
        units: int = 64,
        structure: str = "parallel",
        reduction_ratio: float = 2.0,
        activation: str | None = "relu",
        layer_norm_epsilon: float = 1e-5,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(num_blocks) < 1:
            raise ValueError(f"MaskNetBlocks needs num_blocks >= 1, got {num_blocks}.")
        if structure not in _STRUCTURES:
            raise ValueError(f"structure must be one of {_STRUCTURES}, got {structure!r}.")
        self.num_blocks = int(num_blocks)
        self.units = int(units)
        self.structure = structure
        self.reduction_ratio = float(reduction_ratio)
        self.activation = activation
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.embedding_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="embedding_norm"
        )
        self.blocks = [
            MaskBlock(
                self.units,
                self.reduction_ratio,
                activation,
                self.layer_norm_epsilon,
                kernel_initializer=_fresh(self.kernel_initializer),
                dtype=self.dtype_policy,
                name=f"mask_block_{i}",
            )
            for i in range(self.num_blocks)
        ]

    def build(self, input_shape) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"MaskNetBlocks takes stacked fields (B, F, d), got {input_shape}.")
        width = int(input_shape[1]) * int(input_shape[2])
        self.embedding_norm.build(tuple(input_shape))
        flat = (input_shape[0], width)
        hidden = flat
        for block in self.blocks:
            block.build(hidden, flat)
            if self.structure == "serial":
                hidden = (input_shape[0], self.units)
        self.built = True

    def call(self, inputs):
        fields = ops.cast(inputs, self.compute_dtype)
        width = fields.shape[1] * fields.shape[2]
        instance = ops.reshape(fields, (-1, width))
        normalized = ops.reshape(self.embedding_norm(fields), (-1, width))
        if self.structure == "parallel":
            outputs = [block(normalized, instance) for block in self.blocks]
            return ops.concatenate(outputs, axis=-1) if len(outputs) > 1 else outputs[0]
        hidden = normalized
        for block in self.blocks:
            hidden = block(hidden, instance)
        return hidden

    def output_width(self) -> int:
        return self.units * (self.num_blocks if self.structure == "parallel" else 1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_width())

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_blocks=self.num_blocks,
            units=self.units,
            structure=self.structure,
            reduction_ratio=self.reduction_ratio,
            activation=self.activation,
            layer_norm_epsilon=self.layer_norm_epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
