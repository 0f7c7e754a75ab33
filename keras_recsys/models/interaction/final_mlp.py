"""FinalMLP: two feature-gated MLP streams fused by multi-head bilinear interaction."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.interaction.bilinear_fusion import BilinearFusion
from keras_recsys.layers.interaction.feature_gating import FeatureGating
from keras_recsys.layers.mlp import MLP
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class FinalMLPBackbone(Backbone):
    """FinalMLP's body: "logits" = BF(MLP_1(x0 ⊙ g_1), MLP_2(x0 ⊙ g_2)) per task.

    x0 = [all field embeddings, numerics]; each stream s has its own gate
    g_s = 2σ(MLP_g(c_s)) (`FeatureGating`) on the embeddings of the fields
    named in `gate<s>_context`, or on a learned vector when none are
    named (a global gate), and its own MLP. The two stream outputs are
    fused by `BilinearFusion` into every task's logit, so the output layer
    lives here ("logits") and the model has no linear task heads; "hidden"
    = [o_1, o_2], the two streams' outputs.

    Choose (the paper is silent): the gates read the same field embeddings
    as the streams; the authors' code gives context features embedding
    tables of their own.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`.
        mlp1_units: widths of stream 1's MLP.
        mlp2_units: widths of stream 2's MLP.
        mlp1_dropout: dropout rate of stream 1's MLP.
        mlp2_dropout: dropout rate of stream 2's MLP.
        activation: activation of both streams.
        normalization: None, "batch" or "layer" in both streams.
        use_gating: gate the streams' inputs (False: DualMLP, both streams
            read x0 itself).
        gate_units: hidden width of every gate.
        gate1_context: names of the fields stream 1's gate reads (empty:
            a learned context vector of the spec's embedding size).
        gate2_context: the same for stream 2.
        fusion_heads: heads of the bilinear fusion (both streams' last
            widths must be multiples of it).

    Example:

    >>> backbone = kr.models.FinalMLPBackbone(
    ...     spec, {"click": 1}, mlp1_units=[32], mlp2_units=[16]
    ... )
    >>> outputs = backbone(batch)
    >>> outputs["hidden"].shape, outputs["logits"]["click"].shape
    ((B, 48), (B, 1))
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        mlp1_units: Sequence[int] = (64, 64, 64),
        mlp2_units: Sequence[int] = (64, 64, 64),
        mlp1_dropout: float = 0.0,
        mlp2_dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        use_gating: bool = True,
        gate_units: int = 64,
        gate1_context: Sequence[str] = (),
        gate2_context: Sequence[str] = (),
        fusion_heads: int = 1,
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
        if not mlp1_units or not mlp2_units:
            raise ValueError("FinalMLP needs at least one layer in each stream's MLP.")
        self.mlp1_units = [int(u) for u in mlp1_units]
        self.mlp2_units = [int(u) for u in mlp2_units]
        self.mlp1_dropout = float(mlp1_dropout)
        self.mlp2_dropout = float(mlp2_dropout)
        self.activation = activation
        self.normalization = normalization
        self.use_gating = bool(use_gating)
        self.gate_units = int(gate_units)
        self.gate1_context = [str(n) for n in gate1_context]
        self.gate2_context = [str(n) for n in gate2_context]
        self.fusion_heads = int(fusion_heads)
        unknown = sorted(set(self.gate1_context + self.gate2_context) - set(self.field_names))
        if unknown:
            raise ValueError(
                f"FinalMLP's gate context names {unknown}, which are not fields; the "
                f"fields are {self.field_names}."
            )
        self.gates = (
            [
                FeatureGating(
                    self.gate_units,
                    context_dim=self.spec.default_embedding_dim,
                    dtype=self.dtype_policy,
                    name=f"gate_{stream}",
                )
                for stream in (1, 2)
            ]
            if self.use_gating
            else []
        )
        self.mlps = [
            MLP(
                units,
                activation,
                rate,
                normalization,
                dtype=self.dtype_policy,
                name=f"mlp_{stream}",
            )
            for stream, units, rate in (
                (1, self.mlp1_units, self.mlp1_dropout),
                (2, self.mlp2_units, self.mlp2_dropout),
            )
        ]
        self.fusion = BilinearFusion(
            units=sum(self.task_units.values()),
            num_heads=self.fusion_heads,
            dtype=self.dtype_policy,
            name="fusion",
        )

    def _context(self, embedded, names):
        if not names:
            return None
        return ops.concatenate([embedded["fields"][name] for name in names], axis=-1)

    def body(self, embedded, inputs, training=None):
        x0 = self.concat_inputs(embedded)
        streams = [x0, x0]
        if self.use_gating:
            streams = [
                gate(x0, context=self._context(embedded, names))
                for gate, names in zip(self.gates, (self.gate1_context, self.gate2_context))
            ]
        first, second = (mlp(x, training=training) for mlp, x in zip(self.mlps, streams))
        return {
            "hidden": ops.concatenate([first, second], axis=-1),
            "logits": self.split_by_task(self.fusion(first, second)),
        }

    def gradnorm_variables(self) -> list:
        """The last layer of both streams: the last weights every task shares
        (the fusion has one output column per task logit)."""
        return [v for mlp in self.mlps for v in mlp.dense_layers[-1].trainable_variables]

    def get_config(self):
        config = super().get_config()
        config.update(
            mlp1_units=self.mlp1_units,
            mlp2_units=self.mlp2_units,
            mlp1_dropout=self.mlp1_dropout,
            mlp2_dropout=self.mlp2_dropout,
            activation=self.activation,
            normalization=self.normalization,
            use_gating=self.use_gating,
            gate_units=self.gate_units,
            gate1_context=self.gate1_context,
            gate2_context=self.gate2_context,
            fusion_heads=self.fusion_heads,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class FinalMLP(RecModel):
    """FinalMLP: logit = Σ_j BF(o_{1,j}, o_{2,j}), o_s = MLP_s(x0 ⊙ 2σ(Gate_s(c_s))).

    Two MLP streams read the same input x0 = [all field embeddings,
    numerics], each through its own feature gate (`FeatureGating`): a
    gate conditioned on chosen fields (e.g. user fields for one stream,
    item fields for the other) or on a learned vector, with scales in
    (0, 2). The streams' outputs are fused by multi-head bilinear
    interaction (`BilinearFusion`): per head j, BF = b + w_1ᵀ o_{1,j} +
    w_2ᵀ o_{2,j} + o_{1,j}ᵀ W_3 o_{2,j}, summed over the heads, one
    output per task logit. The fusion is the output layer, so there are
    no separate linear heads. `use_gating=False` gives DualMLP, the
    paper's ungated two-stream baseline. The body is `FinalMLPBackbone`.

    Defaults are those of the authors' FuxiCTR implementation (3 × 64 in
    both streams, a 64-unit gate on a learned context, one fusion head);
    the paper tunes the stream widths per dataset.

    Reference: Mao et al., 2023, "FinalMLP: An Enhanced Two-Stream MLP
    Model for CTR Prediction" (AAAI).

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: the tasks.
        mlp1_units: widths of stream 1's MLP.
        mlp2_units: widths of stream 2's MLP.
        mlp1_dropout: dropout rate of stream 1's MLP.
        mlp2_dropout: dropout rate of stream 2's MLP.
        activation: activation of both streams.
        normalization: None, "batch" or "layer" in both streams.
        use_gating: gate the streams' inputs (False: DualMLP).
        gate_units: hidden width of every gate.
        gate1_context: field names stream 1's gate reads (empty: a learned
            context vector).
        gate2_context: the same for stream 2.
        fusion_heads: heads of the bilinear fusion.

    Example:

    >>> model = kr.models.FinalMLP(
    ...     spec, tasks="click", mlp1_units=[400] * 3, mlp2_units=[800],
    ...     gate1_context=["user_id"], gate2_context=["item_id"],
    ... )
    """

    uses_task_heads = False

    def __init__(
        self,
        spec,
        tasks,
        mlp1_units: Sequence[int] = (64, 64, 64),
        mlp2_units: Sequence[int] = (64, 64, 64),
        mlp1_dropout: float = 0.0,
        mlp2_dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        use_gating: bool = True,
        gate_units: int = 64,
        gate1_context: Sequence[str] = (),
        gate2_context: Sequence[str] = (),
        fusion_heads: int = 1,
        **kwargs,
    ):
        super().__init__(spec, tasks, **kwargs)
        self.backbone = FinalMLPBackbone(
            mlp1_units=mlp1_units,
            mlp2_units=mlp2_units,
            mlp1_dropout=mlp1_dropout,
            mlp2_dropout=mlp2_dropout,
            activation=activation,
            normalization=normalization,
            use_gating=use_gating,
            gate_units=gate_units,
            gate1_context=gate1_context,
            gate2_context=gate2_context,
            fusion_heads=fusion_heads,
            **self.backbone_arguments(),
        )
        self.build_now()
