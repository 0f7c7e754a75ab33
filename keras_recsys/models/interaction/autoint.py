"""AutoInt (and AutoInt+): self-attentive interacting layers over field embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.embedding import flatten_fields, stack_fields
from keras_recsys.layers.interaction.field_attention import FieldSelfAttention
from keras_recsys.layers.mlp import MLP
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel
from keras_recsys.models.interaction.deepfm import spec_dim


@keras.saving.register_keras_serializable(package="keras_recsys")
class AutoIntBackbone(Backbone):
    """AutoInt's body: "hidden" = flatten(interacting layers(e_1..e_F)) [, MLP(x0)].

    The stacked field embeddings (numeric features are fields e_m = x_m ·
    v_m, as in the paper) go through `num_layers` `FieldSelfAttention`
    layers; their output (B, F, H·d') is flattened into "hidden", which
    the task heads read (the paper's output layer). With `hidden_units`
    (AutoInt+), an MLP on the flattened embeddings runs beside the
    attention and its output is concatenated, so a head adds the two
    logits as the paper's joint model does.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`
            (AutoInt needs `numeric_field_dim`, the size of every field).
        num_layers: interacting layers.
        num_heads: attention heads per layer.
        head_dim: d', the size of every head.
        use_residual: the projected residual W_Res e_m of every layer.
        use_scale: divide attention logits by √d' (the authors' code).
        layer_norm: layer-normalize every layer's output (the authors' code).
        attention_dropout: dropout rate on the attention weights.
        hidden_units: widths of AutoInt+'s MLP; empty for AutoInt.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> backbone = kr.models.AutoIntBackbone(
    ...     spec, {"click": 1}, num_layers=2, head_dim=8, numeric_field_dim=8
    ... )
    >>> backbone(batch)["hidden"].shape  # F fields x 2 heads x 8
    (B, 16 * F)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        num_layers: int = 3,
        num_heads: int = 2,
        head_dim: int = 32,
        use_residual: bool = True,
        use_scale: bool = False,
        layer_norm: bool = False,
        attention_dropout: float = 0.0,
        hidden_units: Sequence[int] = (),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
        if int(num_layers) < 1:
            raise ValueError(f"AutoInt needs num_layers >= 1, got {num_layers}.")
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.head_dim = int(head_dim)
        self.use_residual = bool(use_residual)
        self.use_scale = bool(use_scale)
        self.layer_norm = bool(layer_norm)
        self.attention_dropout = float(attention_dropout)
        self.hidden_units = [int(u) for u in hidden_units]
        self.dropout = dropout
        self.activation = activation
        self.normalization = normalization
        self.attention_layers = [
            FieldSelfAttention(
                num_heads=self.num_heads,
                head_dim=self.head_dim,
                use_residual=self.use_residual,
                use_scale=self.use_scale,
                layer_norm=self.layer_norm,
                dropout=self.attention_dropout,
                dtype=self.dtype_policy,
                name=f"interacting_{i}",
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
        fields = stack_fields(embedded["fields"], self.field_names)
        x = fields
        for layer in self.attention_layers:
            x = layer(x, training=training)
        hidden = ops.reshape(x, (-1, x.shape[1] * x.shape[2]))
        if self.mlp is not None:
            x0 = flatten_fields(fields, embedded["dense"])
            hidden = ops.concatenate([hidden, self.mlp(x0, training=training)], axis=-1)
        return {"hidden": hidden}

    def gradnorm_variables(self) -> list:
        """The last interacting layer (and the MLP's last layer in AutoInt+):
        what the task heads read."""
        variables = list(self.attention_layers[-1].trainable_variables)
        if self.mlp is not None:
            variables += list(self.mlp.dense_layers[-1].trainable_variables)
        return variables

    def get_config(self):
        config = super().get_config()
        config.update(
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            head_dim=self.head_dim,
            use_residual=self.use_residual,
            use_scale=self.use_scale,
            layer_norm=self.layer_norm,
            attention_dropout=self.attention_dropout,
            hidden_units=self.hidden_units,
            dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class AutoInt(RecModel):
    """AutoInt: logit = head(flatten(interacting layers(e_1..e_F))); AutoInt+ adds an MLP.

    Every field (categorical, pooled sequence, and numeric as e_m = x_m ·
    v_m) is a d-vector; an interacting layer (`FieldSelfAttention`) lets
    each field attend to all fields with H heads,
    ẽ^h_m = Σ_k softmax_k(⟨W^h_Q e_m, W^h_K e_k⟩) W^h_V e_k, and outputs
    ReLU([ẽ^1_m, ..., ẽ^H_m] + W_Res e_m). Stacked layers model
    interactions of growing order; the last layer's output is flattened
    and a task head maps it to the logit. With `hidden_units` the model
    is AutoInt+: an MLP on the embeddings runs in parallel and its logit
    is added (the head reads both). The body is `AutoIntBackbone`.

    Defaults are the paper's: 3 interacting layers of 2 heads of size 32,
    residual connections, no MLP.

    Reference: Song et al., 2019, "AutoInt: Automatic Feature Interaction
    Learning via Self-Attentive Neural Networks" (CIKM).

    Args:
        spec: a fitted `FeatureSpec` (one embedding size for all fields).
        tasks: the tasks.
        num_layers: interacting layers.
        num_heads: attention heads per layer.
        head_dim: d', the size of every head.
        use_residual: the projected residual W_Res e_m of every layer.
        use_scale: divide attention logits by √d' (the authors' code does,
            the paper does not).
        layer_norm: layer-normalize every layer's output (the authors' code).
        attention_dropout: dropout rate on the attention weights.
        hidden_units: widths of AutoInt+'s MLP; empty for AutoInt.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> model = kr.models.AutoInt(spec, tasks="click")                          # AutoInt
    >>> model = kr.models.AutoInt(spec, tasks="click", hidden_units=[400, 400])  # AutoInt+
    """

    def __init__(
        self,
        spec,
        tasks,
        num_layers: int = 3,
        num_heads: int = 2,
        head_dim: int = 32,
        use_residual: bool = True,
        use_scale: bool = False,
        layer_norm: bool = False,
        attention_dropout: float = 0.0,
        hidden_units: Sequence[int] = (),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        kwargs.setdefault("numeric_field_dim", spec_dim(spec))
        super().__init__(spec, tasks, **kwargs)
        self.backbone = AutoIntBackbone(
            num_layers=num_layers,
            num_heads=num_heads,
            head_dim=head_dim,
            use_residual=use_residual,
            use_scale=use_scale,
            layer_norm=layer_norm,
            attention_dropout=attention_dropout,
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()
